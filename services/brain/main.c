/* main.c - the brain binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc brain_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&brain_service, argc, argv);
}
