/*
 * attrs.h — compiler attributes shared by the headers.
 *
 * CMDB_MUST_USE marks a function whose result must be looked at: a status that says
 * whether it worked, or a new allocation the caller owns. With -Werror an ignored
 * result does not build.
 */
#ifndef CMDB_ATTRS_H
#define CMDB_ATTRS_H

#if defined(__GNUC__) || defined(__clang__)
#define CMDB_MUST_USE __attribute__((warn_unused_result))
#else
#define CMDB_MUST_USE
#endif

#endif
