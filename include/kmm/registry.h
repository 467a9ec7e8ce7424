/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI images: pulling from a registry (distribution API v2) or reading an OCI
 * image layout directory, checking that an image exists, and extracting a few
 * subtrees of it safely.
 *
 * Typical use (kmm-worker):
 *
 *     struct kmm_registry_options o = { .ca_file = "/etc/kmm/ca.pem",
 *                                       .docker_config_file = "/var/run/secrets/pull/.dockerconfigjson" };
 *     struct kmm_registry *r;
 *     const char *const want[] = { "/opt/lib/modules/6.1.0-18-amd64", "/firmware", NULL };
 *
 *     kmm_registry_new(&o, &r, &err);
 *     kmm_image_extract(r, "quay.io/acme/kmod:6.1.0-18-amd64", want, "/var/lib/kmm/img",
 *                       NULL, NULL, &err);
 *     kmm_image_extract(NULL, "oci:/mnt/layout:kmod-a", want, "/tmp/img", NULL, NULL, &err);
 *
 * Operator (image existence): kmm_registry_image_exists() returns 1, 0 or a
 * negative errno with an error that says why (401 with the registry's message,
 * TLS verification failure, timeout, ...). Every request has a timeout. The
 * error's message quotes the registry; kmm_registry_error_summary() gives a
 * short text that does not, for status conditions. kmm_image_checks runs
 * such checks on a few threads of its own so a slow registry stalls nobody.
 *
 * A struct kmm_registry owns one libcurl handle (connections and auth tokens
 * are reused across calls). It is NOT thread-safe: use one per thread.
 * Strings returned through ret_* belong to the caller (free()).
 */
#ifndef KMM_REGISTRY_H
#define KMM_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

/*
 * A parsed image reference, Docker style:
 *   [host[:port]/]path[:tag][@sha256:<64 hex>]
 * The first component is a registry host when it contains '.' or ':' or is
 * "localhost"; otherwise the registry is docker.io and single-component paths
 * get "library/". Without tag and digest the tag is "latest".
 */
struct kmm_image_ref {
	char *registry;	  /* "docker.io", "127.0.0.1:5000" */
	char *repository; /* "library/busybox", "kmm/kmod-a" */
	char *tag;	  /* "latest"; NULL when only a digest was given */
	char *digest;	  /* "sha256:<hex>", or NULL */
};

/* Parses s. Errors (-EINVAL) quote the reference and say what is wrong. */
int kmm_image_ref_parse(const char *s, struct kmm_image_ref **ret_ref, struct kmm_error **err);

/* "registry/repository[:tag][@digest]"; NULL on ENOMEM. */
char *kmm_image_ref_to_string(const struct kmm_image_ref *ref);

void kmm_image_ref_free(struct kmm_image_ref *ref);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_image_ref *, kmm_image_ref_free)

/*
 * Destination policy: which addresses the client may connect to. Image
 * references (and the token realms and redirects registries answer with)
 * are chosen by others, so every address curl is about to connect to, after
 * DNS and after each redirect, is checked; a refused one is never connected.
 *
 * Refused by default: link-local (169.254.0.0/16, fe80::/10) and the cloud
 * metadata addresses outside it (100.100.100.200, fd00:ec2::254,
 * 168.63.129.16, 192.0.0.192), also in their IPv4-mapped, -compatible and
 * NAT64 (64:ff9b::/96) IPv6 forms. Loopback and private ranges are allowed:
 * in-cluster registries live there (see docs/operator.md).
 *
 * allow and deny are NULL-terminated lists (may be NULL) of IP addresses or
 * CIDRs ("169.254.10.0/24", "fd00::/8"); host bits must be zero. An address
 * in deny (or the built-in list) and in none of allow is refused.
 */
struct kmm_registry_policy;

int kmm_registry_policy_new(const char *const *allow, const char *const *deny,
			    struct kmm_registry_policy **ret, struct kmm_error **err);
void kmm_registry_policy_free(struct kmm_registry_policy *p);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_registry_policy *, kmm_registry_policy_free)

/* The built-in policy (static, never freed). */
const struct kmm_registry_policy *kmm_registry_policy_default(void);

/*
 * 0 when sa (len bytes) may be connected to; -EPERM with why ("169.254.169.254
 * is a cloud metadata address") when not. p NULL means the default policy.
 */
int kmm_registry_policy_check(const struct kmm_registry_policy *p, const struct sockaddr *sa,
			      size_t len, char *why, size_t size);
/* The same for an address in text form; -EINVAL when ip is not an address. */
int kmm_registry_policy_check_text(const struct kmm_registry_policy *p, const char *ip, char *why,
				   size_t size);

struct kmm_registry_options {
	/* Plain HTTP instead of HTTPS (Module registryTLS.insecure). */
	bool insecure;
	/* HTTPS without certificate verification (registryTLS.insecureSkipTLSVerify). */
	bool insecure_skip_tls_verify;
	/* PEM CA bundle to verify registries with, instead of the system store; or NULL. */
	const char *ca_file;
	/* The same as PEM text (e.g. from a ConfigMap), used instead of ca_file when set. */
	const char *ca_pem;
	/*
	 * Credentials. A .dockerconfigjson document ({"auths":{host:{"auth":b64}}} or
	 * with "username"/"password"), given as text and/or as a file; the entry
	 * whose key matches the image's registry host is used. username/password,
	 * when set, win over both. All may be NULL: anonymous pulls.
	 */
	const char *docker_config;
	const char *docker_config_file;
	const char *username;
	const char *password;
	/* Where connections may go (borrowed, must outlive the client); NULL: the default. */
	const struct kmm_registry_policy *policy;
	/* 0 means the default: connect 10 s; manifests and tokens 30 s per request. */
	long connect_timeout_ms;
	long request_timeout_ms;
	/* Blob downloads abort after this many seconds below 1 KiB/s (default 60). */
	long stall_timeout_s;
	/* Platform picked from an image index; NULL means linux and the build's arch. */
	const char *os;
	const char *architecture;
	const char *variant;
};

struct kmm_registry;

/*
 * Creates a client. opts may be NULL (anonymous, HTTPS, system CAs). The
 * options' strings are copied; a docker config file is read and parsed here,
 * so a broken pull secret fails early.
 */
int kmm_registry_new(const struct kmm_registry_options *opts, struct kmm_registry **ret,
		     struct kmm_error **err);
void kmm_registry_free(struct kmm_registry *r);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_registry *, kmm_registry_free)

/*
 * HEAD the image's manifest. Returns 1 if it exists (storing its digest in
 * *ret_digest when ret_digest is not NULL and the registry sent one), 0 if the
 * registry answered 404 (tag or repository unknown), or a negative errno with
 * *err set for anything else: -EACCES for 401/403, -ETIMEDOUT, -EPROTO for TLS
 * failures, -EINVAL for a bad reference, ...
 */
int kmm_registry_image_exists(struct kmm_registry *r, const char *image, char **ret_digest,
			      struct kmm_error **err);

/*
 * A short, printable-ASCII description of a registry error (at most size-1
 * bytes, size <= 256 is plenty) that quotes nothing the remote side sent
 * beyond an HTTP status and a registry error code of [A-Z0-9_] characters:
 * fit for a status condition. The full message belongs in a debug log.
 */
void kmm_registry_error_summary(const struct kmm_error *e, char *buf, size_t size);

/*
 * Credentials (Basic, from the options or the docker config) are sent:
 *  - to the registry itself when it asks for Basic auth;
 *  - to a Bearer token realm only over https, and when the challenge came over
 *    a connection that was not verified (plain http or insecureSkipTLSVerify),
 *    only to a realm on the registry's own host name.
 * Otherwise the check fails with -EACCES (reason "CredentialsWithheld") and the
 * realm is not contacted.
 */

/* ---- existence checks off the caller's threads ---- */

struct kmm_image_checks_options {
	unsigned threads;  /* checks run at once, all hosts (default 4) */
	unsigned per_host; /* ... for one registry host:port (default 2) */
	size_t max_queued; /* waiting checks; more are refused with -EAGAIN (default 1024) */
	long deadline_ms;  /* one check, token request included (default 30000) */
};

/*
 * Called on a check thread when a check ends: result as from
 * kmm_registry_image_exists() (1, 0 or a negative errno with err set; err is
 * borrowed). key and tag are those given to kmm_image_checks_submit().
 */
typedef void (*kmm_image_check_done_fn)(void *userdata, const char *key, uint64_t tag, int result,
					const struct kmm_error *err);

struct kmm_image_checks;

int kmm_image_checks_new(const struct kmm_image_checks_options *opts, kmm_image_check_done_fn done,
			 void *userdata, struct kmm_image_checks **ret, struct kmm_error **err);
/*
 * Queues a check of image with reg (taken, also on failure). Checks of one
 * host beyond per_host wait while other hosts' checks run. A check of the
 * same key and image still waiting takes this tag and reg instead (one
 * callback, with the new tag). -EAGAIN when the queue is full, -EINVAL for a
 * bad reference, -ECANCELED once stopping.
 */
int kmm_image_checks_submit(struct kmm_image_checks *c, const char *key, uint64_t tag,
			    const char *image, struct kmm_registry *reg, struct kmm_error **err);
/*
 * Stops: queued checks are dropped, running ones are aborted (within about a
 * second); no callback runs once this is called. Joins the threads.
 */
void kmm_image_checks_free(struct kmm_image_checks *c);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_image_checks *, kmm_image_checks_free)

/* Caps for one kmm_image_extract() call; 0 in a field means its default. */
struct kmm_extract_limits {
	uint64_t max_total_bytes;   /* bytes written, all files (default 4 GiB) */
	uint64_t max_file_bytes;    /* one file (default 1 GiB) */
	uint64_t max_entries;	    /* tar headers read, all layers (default 1,000,000) */
	uint64_t max_blob_bytes;    /* one compressed layer blob (default 4 GiB) */
	uint64_t max_archive_bytes; /* uncompressed tar data read, all layers (default 64 GiB) */
	uint64_t max_layers;	    /* layers in the manifest (default 256) */
};

/*
 * Extracts the parts of `image` under `include_prefixes` into `target_dir`.
 *
 * image: a registry reference (see kmm_image_ref_parse; needs r), or
 *   "oci:DIR" / "oci:DIR:NAME" for an OCI image layout directory, where NAME
 *   matches the org.opencontainers.image.ref.name annotation in index.json
 *   (without NAME the index must hold exactly one entry). r may be NULL for
 *   layouts; if given, its platform options are used.
 * include_prefixes: NULL-terminated image paths such as
 *   "/opt/lib/modules/6.1.0-18-amd64"; an entry lands if its path equals a
 *   prefix or lies below one. Missing parent directories are created 0755.
 *   Prefixes are matched against the paths stored in the layers: a prefix
 *   reached through a symlink in the image (e.g. lib -> usr/lib) does not
 *   match.
 * target_dir: must not exist, or be an empty directory that is not a mount
 *   point (-ENOTEMPTY / -EEXIST otherwise); its parent must exist and be
 *   writable, on the same filesystem.
 *   Layers are flattened (in order, applying .wh. whiteouts) into a temporary
 *   directory next to it, which is renamed to target_dir only after every blob
 *   matched its digest and nothing was rejected. On failure nothing is left.
 * limits: NULL for the defaults.
 *
 * Rejected, with an error naming the image, layer digest, entry and reason:
 * names with "..", absolute names, symlinks whose target would leave the tree
 * (absolute targets are rewritten relative, so they stay inside), hard links to
 * anything but an extracted regular file, device nodes, FIFOs, sockets,
 * malformed whiteouts, too many entries or bytes, blobs that do not match
 * their digest or size, unknown layer media types.
 * Only regular files, directories, symlinks and hard links are written; file
 * modes keep the 0777 bits (no setuid/setgid), owners and times are not kept.
 *
 * ret_manifest_digest (may be NULL) receives the digest of the image manifest
 * that was extracted (after platform selection).
 */
int kmm_image_extract(struct kmm_registry *r, const char *image,
		      const char *const *include_prefixes, const char *target_dir,
		      const struct kmm_extract_limits *limits, char **ret_manifest_digest,
		      struct kmm_error **err);

#endif
