/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A self-signed serving certificate, made in memory at start when no
 * certificate is given (controller-runtime does the same for its metrics
 * server). The key never touches the disk. lib/certs makes it, with the same
 * code that makes the webhook's certificates.
 */
#include <time.h>

#include "kmm/certs.h"
#include "kmm/server-httpd.h"

#define VALID_SECONDS (365L * 24 * 3600)

int kmm_tls_self_signed(const char *const *hosts, char **ret_cert_pem, char **ret_key_pem,
			struct kmm_error **err)
{
	return kmm_certs_self_signed(hosts, time(NULL), VALID_SECONDS, ret_cert_pem, ret_key_pem,
				     err);
}
