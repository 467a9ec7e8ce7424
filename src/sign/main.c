/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-sign: signs kernel modules as the kernel's scripts/sign-file does,
 * checks signatures and describes them as modinfo does.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "kmm/shared-log.h"
#include "kmm/shared-options.h"
#include "kmm/sign.h"
#include "kmm/shared-strv.h"

#define PROG "kmm-sign"

static const char usage[] =
    "Usage: " PROG " [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Signs kernel modules with the kernel's appended PKCS#7 signature.\n"
    "\n"
    "Commands:\n"
    "  sign --key KEY [--cert CERT] [--hash ALGO] [--keyid] [--no-glob] [-o OUT] FILE...\n"
    "                        sign each module in place (or into OUT, for one FILE);\n"
    "                        an existing signature is replaced. Output is the same\n"
    "                        as scripts/sign-file's. .ko.gz/.ko.xz/.ko.zst modules\n"
    "                        are signed inside and recompressed. A FILE with *, ?\n"
    "                        or [ is a glob pattern (as filesToSign entries are):\n"
    "                        its matches are signed in sorted order, and a pattern\n"
    "                        that matches nothing is skipped with a note\n"
    "  verify --cert CERT FILE...\n"
    "                        check that each module is signed by CERT's key\n"
    "  info FILE...          print the signer, key id and hash as modinfo does\n"
    "  sign-file [-k] HASH KEY CERT MODULE [DEST]\n"
    "                        scripts/sign-file's command line (same output, but an\n"
    "                        existing signature is replaced; no -d, -p or -s)\n";

/* The command line of `sign`. */
struct sign_args {
	struct kmm_signer_options o;
	const char *output;
	bool literal;
};

static int parse_hash(const struct kmm_option *opt, const char *arg, void *ctx,
		      struct kmm_error **err)
{
	struct sign_args *a = ctx;

	(void)opt;
	if (kmm_sign_hash_from_string(arg, &a->o.hash) < 0)
		return kmm_error_make(err, EINVAL,
				      "unsupported --hash '%s' (sha256, sha384 or sha512)", arg);
	return 0;
}

static const struct kmm_option sign_options[] = {
	{ "key", 0, KMM_OPTION_STRING, "KEY", offsetof(struct sign_args, o.key_path), NULL,
	  "private key, PEM or DER, unencrypted" },
	{ "cert", 0, KMM_OPTION_STRING, "CERT", offsetof(struct sign_args, o.cert_path), NULL,
	  "certificate, PEM or DER (default: read from KEY, as in\n"
	  "kbuild's signing_key.pem)" },
	{ "hash", 0, KMM_OPTION_CALL, "ALGO", 0, parse_hash,
	  "sha256, sha384 or sha512 (default sha256)" },
	{ "keyid", 0, KMM_OPTION_FLAG, NULL, offsetof(struct sign_args, o.use_keyid), NULL,
	  "name the signer by subjectKeyIdentifier instead of\n"
	  "issuer and serial (sign-file -k; modinfo then shows no\n"
	  "signer)" },
	{ "no-glob", 0, KMM_OPTION_FLAG, NULL, offsetof(struct sign_args, literal), NULL,
	  "take every FILE literally, even with *, ? or [" },
	{ "output", 'o', KMM_OPTION_STRING, "OUT", offsetof(struct sign_args, output), NULL,
	  "write the signed module to OUT instead of in place" },
	{ 0 },
};

/* The program's --help: every command's options, shown by each command too. */
static const struct kmm_option_group program_groups[] = {
	{ .title = "\nOptions of sign:\n",
	  .options = sign_options,
	  .column = 24,
	  .help_only = true },
	{ .title = "\nOptions:\n", .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options program = {
	.prog = PROG,
	.usage = usage,
	.groups = program_groups,
	.footer = "\nExit status: 0 done, 1 a file failed (the reason is logged), 2 usage error.\n",
};

static const struct kmm_option_group sign_groups[] = {
	{ .options = sign_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options sign_spec = { .prog = PROG,
					      .groups = sign_groups,
					      .help = &program };

static int parse_unsupported(const struct kmm_option *opt, const char *arg, void *ctx,
			     struct kmm_error **err)
{
	(void)arg;
	(void)ctx;
	return kmm_error_make(
	    err, EINVAL, "sign-file: -%c is not supported; only the appended signature (and -k) is",
	    opt->short_name);
}

/* scripts/sign-file's letters; -d, -p and -s are refused (-s takes its signature file). */
static const struct kmm_option sign_file_options[] = {
	{ NULL, 'k', KMM_OPTION_FLAG, NULL, offsetof(struct kmm_signer_options, use_keyid), NULL,
	  NULL },
	{ NULL, 'd', KMM_OPTION_CALL, NULL, 0, parse_unsupported, NULL },
	{ NULL, 'p', KMM_OPTION_CALL, NULL, 0, parse_unsupported, NULL },
	{ NULL, 's', KMM_OPTION_CALL, "SIG", 0, parse_unsupported, NULL },
	{ 0 },
};

static const struct kmm_option_group sign_file_groups[] = {
	{ .options = sign_file_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options sign_file_spec = { .prog = PROG,
						   .groups = sign_file_groups,
						   .help = &program };

static const struct kmm_option verify_options[] = {
	{ "cert", 0, KMM_OPTION_STRING, "CERT", 0, NULL, NULL },
	{ 0 },
};

static const struct kmm_option_group verify_groups[] = {
	{ .options = verify_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options verify_spec = { .prog = PROG,
						.groups = verify_groups,
						.help = &program };

static const struct kmm_option_group info_groups[] = {
	{ .options = kmm_options_common },
	{ 0 },
};

/* `info FILE...`: what follows the first FILE is a FILE too. */
static const struct kmm_options info_spec = {
	.prog = PROG, .groups = info_groups, .stop_at_operand = true, .help = &program
};
static int fail(const char *msg, const char *path, const struct kmm_error *e)
{
	kmm_log(KMM_LOG_ERROR, msg, "file", path, "error", kmm_error_message(e), NULL);
	return KMM_EXIT_FAILURE;
}

/* Signs n files with one signer; output (for one file) is where the result goes. */
static int sign_files(const struct kmm_signer_options *o, const char *output, char **files, int n)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *signer = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	int r, status = KMM_EXIT_OK;

	r = kmm_signer_new(o, &signer, &e);
	if (r < 0) {
		kmm_log(KMM_LOG_ERROR, "cannot load the signing key", "error", kmm_error_message(e),
			NULL);
		return KMM_EXIT_FAILURE;
	}
	for (int i = 0; i < n; i++) {
		struct kmm_sign_result res;
		char replaced[16], bytes[32];

		kmm_error_clear(&e);
		r = kmm_signer_sign_file(signer, files[i], output, &res, &e);
		if (r < 0) {
			status = fail("signing failed", files[i], e);
			continue;
		}
		snprintf(replaced, sizeof(replaced), "%u", res.replaced);
		snprintf(bytes, sizeof(bytes), "%zu", res.sig_len);
		kmm_log(KMM_LOG_INFO, "signed", "file", output ? output : files[i], "compression",
			kmm_module_compression_name(res.compression), "signature_bytes", bytes,
			"replaced", replaced, NULL);
	}
	return status;
}

static int cmd_sign(int argc, char **argv)
{
	struct sign_args a = { .o = { .hash = KMM_SIGN_HASH_SHA256 } };
	_cleanup_strv_free_ char **files = NULL, **unmatched = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	const struct kmm_signer_options *o = &a.o;
	const char *output;
	int first, r;

	r = kmm_options_parse(&sign_spec, argc, argv, &a, &first);
	if (r >= 0)
		return r;
	output = a.output;
	if (!o->key_path)
		return kmm_options_usage_error(PROG, "sign: --key is required");
	if (first >= argc)
		return kmm_options_usage_error(PROG, "sign: no module given");
	if (output && argc - first != 1)
		return kmm_options_usage_error(PROG, "sign: --output takes exactly one module");

	r = kmm_sign_expand_files(argv + first, (size_t)(argc - first), a.literal, &files,
				  &unmatched, &e);
	if (r < 0) {
		kmm_log(KMM_LOG_ERROR, "cannot expand the file patterns", "error",
			kmm_error_message(e), NULL);
		return KMM_EXIT_FAILURE;
	}
	/* Upstream's shell loop skips a pattern that matched nothing; say so at least. */
	for (char **u = unmatched; *u; u++)
		kmm_log(KMM_LOG_WARN, "no file matches the pattern, nothing signed for it",
			"pattern", *u, NULL);
	if (output && kmm_strv_length(files) != 1)
		return kmm_options_usage_error(PROG,
					       "sign: --output takes exactly one module, '%s' "
					       "matched %zu",
					       argv[first], kmm_strv_length(files));
	if (!files[0])
		return KMM_EXIT_OK;
	return sign_files(o, output, files, (int)kmm_strv_length(files));
}

/* scripts/sign-file's own command line, for scripts and Dockerfiles that call it. */
static int cmd_sign_file(int argc, char **argv)
{
	struct kmm_signer_options o = { 0 };
	int first, r, n;

	r = kmm_options_parse(&sign_file_spec, argc, argv, &o, &first);
	if (r >= 0)
		return r;
	n = argc - first;
	if (n != 4 && n != 5)
		return kmm_options_usage_error(PROG,
					       "usage: sign-file [-k] HASH KEY CERT MODULE [DEST]");
	if (kmm_sign_hash_from_string(argv[first], &o.hash) < 0)
		return kmm_options_usage_error(PROG,
					       "sign-file: unsupported hash '%s' (sha256, sha384 "
					       "or sha512)",
					       argv[first]);
	o.key_path = argv[first + 1];
	o.cert_path = argv[first + 2];
	return sign_files(&o, n == 5 ? argv[first + 4] : NULL, argv + first + 3, 1);
}

static int cmd_verify(int argc, char **argv)
{
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *cert = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	const char *cert_path = NULL;
	int first, r, status = KMM_EXIT_OK;

	r = kmm_options_parse(&verify_spec, argc, argv, &cert_path, &first);
	if (r >= 0)
		return r;
	if (!cert_path)
		return kmm_options_usage_error(PROG, "verify: --cert is required");
	if (first >= argc)
		return kmm_options_usage_error(PROG, "verify: no module given");

	r = kmm_sign_cert_load(cert_path, &cert, &e);
	if (r < 0) {
		kmm_log(KMM_LOG_ERROR, "cannot load the certificate", "error", kmm_error_message(e),
			NULL);
		return KMM_EXIT_FAILURE;
	}
	for (int i = first; i < argc; i++) {
		kmm_error_clear(&e);
		r = kmm_sign_verify_file(cert, argv[i], &e);
		if (r < 0) {
			status = fail("verification failed", argv[i], e);
			continue;
		}
		printf("%s: OK\n", argv[i]);
	}
	return status;
}

/* One modinfo line: the key and its colon padded to 16 columns. */
static void print_field(const char *key, const char *value)
{
	printf("%s:%-*s%s\n", key, (int)(15 - strlen(key)), "", value);
}

static int print_info(const struct kmm_sig_info *info)
{
	_cleanup_free_ char *key = kmm_sig_hex(info->key_id, info->key_id_len, 0);
	_cleanup_free_ char *sig = kmm_sig_hex(info->signature, info->signature_len, 20);

	if (!key || !sig)
		return -1;
	print_field("sig_id", info->sig_id);
	if (info->signer)
		print_field("signer", info->signer);
	print_field("sig_key", key);
	print_field("sig_hashalgo", info->hash_algo);
	print_field("signature", sig);
	return 0;
}

static int cmd_info(int argc, char **argv)
{
	_cleanup_error_ struct kmm_error *e = NULL;
	int first, r, status = KMM_EXIT_OK;

	r = kmm_options_parse(&info_spec, argc, argv, NULL, &first);
	if (r >= 0)
		return r;
	if (first >= argc)
		return kmm_options_usage_error(PROG, "info: no module given");
	for (int i = first; i < argc; i++) {
		_cleanup_(kmm_sig_info_freep) struct kmm_sig_info *info = NULL;

		kmm_error_clear(&e);
		r = kmm_sig_info_from_file(argv[i], &info, &e);
		if (r < 0) {
			status = fail("cannot read the signature", argv[i], e);
			continue;
		}
		print_field("filename", argv[i]);
		if (r == 0) {
			kmm_log(KMM_LOG_ERROR, "not signed", "file", argv[i], NULL);
			status = KMM_EXIT_FAILURE;
			continue;
		}
		if (print_info(info) < 0) {
			kmm_log(KMM_LOG_ERROR, "out of memory", "file", argv[i], NULL);
			status = KMM_EXIT_FAILURE;
		}
	}
	return status;
}

static const struct kmm_command commands[] = {
	{ "sign", "sign modules", cmd_sign },
	{ "sign-file", "sign one module with scripts/sign-file's arguments", cmd_sign_file },
	{ "verify", "check module signatures against a certificate", cmd_verify },
	{ "info", "describe module signatures", cmd_info },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return kmm_options_dispatch(&program, commands, argc, argv);
}
