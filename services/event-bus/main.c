/* main.c - the event-bus binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc bus_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&bus_service, argc, argv);
}
