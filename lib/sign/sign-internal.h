/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pieces of lib/sign that unit tests reach directly (built extern with
 * KMM_TESTING, see lib/meson.build).
 */
#ifndef KMM_LIB_SIGN_INTERNAL_H
#define KMM_LIB_SIGN_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmm/shared-error.h"
#include "lib/testable.h"

#ifdef KMM_TESTING
/* Static in the product library; extern for unit tests. */

/* Reads an unencrypted private key, PEM (other blocks skipped) or DER. */
int kmm_sign_load_key(const char *path, EVP_PKEY **ret_key, struct kmm_error **err);

/* Reads the first certificate of a PEM file, or a DER certificate. */
int kmm_sign_load_x509(const char *path, X509 **ret_x509, struct kmm_error **err);
#endif

#endif
