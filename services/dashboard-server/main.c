/* main.c - the dashboard-server binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc dash_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&dash_service, argc, argv);
}
