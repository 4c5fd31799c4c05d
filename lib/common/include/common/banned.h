/*
 * banned.h - functions that are easy to misuse, made compile errors.
 *
 * Include it last, after every system header, in each .c file of libcommon
 * and the services (as git does). Use cm_buf, snprintf, cm_parse_* instead.
 * `make checksrc` also greps for these names.
 */
#ifndef COMMON_BANNED_H
#define COMMON_BANNED_H

#define CM_BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) CM_BANNED(strcpy)
#undef strcat
#define strcat(x, y) CM_BANNED(strcat)
#undef strncat
#define strncat(x, y, n) CM_BANNED(strncat)
#undef sprintf
#define sprintf(...) CM_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) CM_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) CM_BANNED(strtok)
#undef atoi
#define atoi(x) CM_BANNED(atoi)
#undef atol
#define atol(x) CM_BANNED(atol)
#undef gets
#define gets(x) CM_BANNED(gets)

#endif
