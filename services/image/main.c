/* main.c - the image binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc img_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&img_service, argc, argv);
}
