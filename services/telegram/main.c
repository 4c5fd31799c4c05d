/* main.c - the telegram binary: hand the descriptor to libcommon. */
#include "common/service.h"

#include "common/banned.h"

extern const struct cm_service_desc tg_service;

int
main(int argc, char **argv)
{
	return cm_service_main(&tg_service, argc, argv);
}
