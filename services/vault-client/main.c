/* main.c - the vault-client binary: hand the descriptor to libcommon, or
   run the one-off secret migration. */
#include <string.h>

#include "common/service.h"

#include "vault_client.h"

#include "common/banned.h"

#define MIGRATE_FLAG "--migrate-secrets="

extern const struct cm_service_desc vc_service;

int
main(int argc, char **argv)
{
	if (argc > 1 && !strncmp(argv[1], MIGRATE_FLAG, strlen(MIGRATE_FLAG)))
		return vc_migrate_main(argv[1] + strlen(MIGRATE_FLAG));
	return cm_service_main(&vc_service, argc, argv);
}
