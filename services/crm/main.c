/* main.c - the crm binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc crm_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&crm_service, argc, argv);
}
