/* main.c - the temporal-worker binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc wf_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&wf_service, argc, argv);
}
