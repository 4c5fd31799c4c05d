/* main.c - the cms binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc cms_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&cms_service, argc, argv);
}
