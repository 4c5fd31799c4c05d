/* main.c - the vault-client binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc vc_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&vc_service, argc, argv);
}
