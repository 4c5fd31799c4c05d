/*
 * main.c - the brain binary: hand the descriptor to libcommon, with
 * brain's one command-line command:
 *
 *   brain --create-super-admin EMAIL
 *
 * creates the platform's super admin EMAIL (the password from
 * BRAIN_ADMIN_PASSWORD, else the first line of stdin; 12..256 bytes and
 * not weak), or promotes an existing account (its password unchanged).
 * Running it again changes nothing and says so. It needs the same
 * settings as the service (PostgreSQL above all).
 */
#include "common/service.h"

#include "brain.h"

#include "common/mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "common/banned.h"

#define PW_MIN_DISTINCT 6

extern const struct cm_service_desc brain_service;

/* Fragments that make a password guessable, whatever surrounds them. */
static const char *const weak_parts[] = {
	"password", "passw0rd", "123456",   "654321", "qwerty", "azerty",
	"letmein",  "changeme", "welcome",  "admin",  "abcdef", "111111",
	"iloveyou", "secret",	"bizosaas", NULL
};

static bool
contains_nocase(const char *hay, const char *needle)
{
	size_t n = strlen(needle), i;

	for (; *hay; hay++) {
		for (i = 0; i < n && hay[i] &&
			    tolower((unsigned char)hay[i]) == needle[i];
		     i++)
			;
		if (i == n)
			return true;
	}
	return false;
}

/* NULL when pw will do for the account email, else why not. */
static const char *
password_weakness(const char *pw, const char *email)
{
	size_t len = strlen(pw), i, distinct = 0, local;
	bool seen[256] = { false };
	char user[65];
	int k;

	if (len < BRAIN_PASSWORD_MIN || len > BRAIN_PASSWORD_MAX)
		return "it must have 12..256 characters";
	for (i = 0; i < len; i++)
		if (!seen[(unsigned char)pw[i]]) {
			seen[(unsigned char)pw[i]] = true;
			distinct++;
		}
	if (distinct < PW_MIN_DISTINCT)
		return "it repeats too few different characters";
	for (k = 0; weak_parts[k]; k++)
		if (contains_nocase(pw, weak_parts[k]))
			return "it contains a common password";
	local = strcspn(email, "@");
	if (local >= 4 && local < sizeof(user)) {
		for (i = 0; i < local; i++)
			user[i] = (char)tolower((unsigned char)email[i]);
		user[local] = '\0';
		if (contains_nocase(pw, user))
			return "it contains the account's name";
	}
	return NULL;
}

/* The password from BRAIN_ADMIN_PASSWORD or stdin's first line (not
   echoed on a terminal); false when there is none. */
static bool
read_password(char out[BRAIN_PASSWORD_MAX + 2])
{
	const char *env = getenv("BRAIN_ADMIN_PASSWORD");
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	bool ok;

	if (env && *env) {
		cm_strlcpy(out, env, BRAIN_PASSWORD_MAX + 2);
		return true;
	}
	if (tty) {
		fprintf(stderr, "password for the super admin: ");
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	ok = fgets(out, BRAIN_PASSWORD_MAX + 2, stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (ok)
		out[strcspn(out, "\r\n")] = '\0';
	return ok && out[0];
}

/* A new super admin; 0, 2 (refused password) or 1 (store failure). */
static int
create_admin(const char *email)
{
	char pw[BRAIN_PASSWORD_MAX + 2], hash[BRAIN_HASH_LEN], id[40];
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *why;
	int rc = 2;

	if (!read_password(pw)) {
		fprintf(stderr, "brain: no password: set BRAIN_ADMIN_PASSWORD "
				"or give it on stdin\n");
		goto out;
	}
	if ((why = password_weakness(pw, email)) != NULL) {
		fprintf(stderr, "brain: password refused: %s\n", why);
		goto out;
	}
	rc = brain_password_hash(pw, BRAIN_PBKDF2_ITER, hash);
	if (rc == 0)
		rc = brain_store_user_create(email, "Platform admin", hash,
					     true, id, errbuf);
	if (rc == CM_EEXIST) { /* created by someone else meanwhile */
		rc = 3;
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, "brain: cannot create %s: %s\n", email,
			errbuf[0] ? errbuf : cm_strerror(rc));
		rc = 1;
		goto out;
	}
	printf("created super admin %s\n", email);
out:
	cm_memzero(pw, sizeof(pw));
	cm_memzero(hash, sizeof(hash));
	return rc;
}

/* An existing account: promote it (or say it is one already). */
static int
promote_admin(const char *email, const struct brain_user *u)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	if (u->super_admin) {
		printf("%s is already a super admin; nothing changed\n", email);
		return 0;
	}
	if (brain_store_user_set_super_admin(u->id, errbuf) < 0) {
		fprintf(stderr, "brain: cannot promote %s: %s\n", email,
			errbuf);
		return 1;
	}
	printf("promoted %s to super admin; its password is unchanged\n",
	       email);
	return 0;
}

static int
cmd_create_super_admin(struct cm_service *svc, const char *email)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct brain_user u;
	int rc, attempt;

	(void)svc;
	if (!email || !brain_email_valid(email)) {
		fprintf(stderr, "brain: --create-super-admin needs an EMAIL\n");
		return 2;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		rc = brain_store_user_by_email(email, &u, errbuf);
		if (rc == 0)
			return promote_admin(email, &u);
		if (rc != CM_ENOENT) {
			fprintf(stderr, "brain: cannot read users: %s\n",
				errbuf);
			return 1;
		}
		if ((rc = create_admin(email)) != 3)
			return rc;
	}
	return 1;
}

static const struct cm_service_cmd brain_commands[] = {
	{ "--create-super-admin", "EMAIL",
	  "create (or promote) a platform super admin; the password comes "
	  "from BRAIN_ADMIN_PASSWORD or stdin",
	  cmd_create_super_admin },
	{ NULL, NULL, NULL, NULL },
};

int
main(int argc, char **argv)
{
	struct cm_service_desc desc = brain_service;

	desc.commands = brain_commands;
	return cm_service_main(&desc, argc, argv);
}
