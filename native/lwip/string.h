/*
 * The string.h lwIP includes, for a guest without a libc: the functions
 * come from native/solo5/util.c (the Solo5 guest helpers).
 */
#ifndef LWIP_SOLO5_STRING_H
#define LWIP_SOLO5_STRING_H

#include "solo5_util.h"

#endif
