/* main.c - the agents binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc agents_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&agents_service, argc, argv);
}
