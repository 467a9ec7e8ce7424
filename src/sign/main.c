/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-sign: signs kernel modules as the kernel's scripts/sign-file does,
 * checks signatures and describes them as modinfo does.
 */
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "kmm/log.h"
#include "kmm/sign.h"
#include "kmm/strv.h"
#include "src/common/cli.h"

#define PROG "kmm-sign"

static const char help[] =
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
    "                        existing signature is replaced; no -d, -p or -s)\n"
    "\n"
    "Options of sign:\n"
    "      --key KEY         private key, PEM or DER, unencrypted\n"
    "      --cert CERT       certificate, PEM or DER (default: read from KEY, as in\n"
    "                        kbuild's signing_key.pem)\n"
    "      --hash ALGO       sha256, sha384 or sha512 (default sha256)\n"
    "      --keyid           name the signer by subjectKeyIdentifier instead of\n"
    "                        issuer and serial (sign-file -k; modinfo then shows no\n"
    "                        signer)\n"
    "      --no-glob         take every FILE literally, even with *, ? or [\n"
    "  -o, --output OUT      write the signed module to OUT instead of in place\n"
    "\n"
    "Options:\n" KMM_COMMON_OPTIONS_HELP "\n"
    "Exit status: 0 done, 1 a file failed (the reason is logged), 2 usage error.\n";

enum {
	OPT_KEY = 0x200,
	OPT_CERT,
	OPT_HASH,
	OPT_KEYID,
	OPT_NO_GLOB,
};

/* Handles the options every command shares; returns -1 to go on or an exit code. */
static int common_option(int opt, int argc, char **argv)
{
	int r;

	if (opt == KMM_OPT_HELP) {
		fputs(help, stdout);
		return KMM_EXIT_OK;
	}
	if (opt == '?')
		return kmm_cli_bad_option(PROG, argc, argv);
	r = kmm_cli_common_option(PROG, opt, optarg);
	if (r == 0)
		return kmm_cli_usage_error(PROG, "unexpected option");
	if (r < 0)
		return -r;
	return -1;
}

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
	static const struct option options[] = {
		KMM_COMMON_LONG_OPTIONS,
		{ "key", required_argument, NULL, OPT_KEY },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "hash", required_argument, NULL, OPT_HASH },
		{ "keyid", no_argument, NULL, OPT_KEYID },
		{ "no-glob", no_argument, NULL, OPT_NO_GLOB },
		{ "output", required_argument, NULL, 'o' },
		{ 0 },
	};
	struct kmm_signer_options o = { .hash = KMM_SIGN_HASH_SHA256 };
	_cleanup_strv_free_ char **files = NULL, **unmatched = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	const char *output = NULL;
	bool literal = false;
	int opt, r;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
		switch (opt) {
		case OPT_KEY:
			o.key_path = optarg;
			break;
		case OPT_CERT:
			o.cert_path = optarg;
			break;
		case OPT_HASH:
			if (kmm_sign_hash_from_string(optarg, &o.hash) < 0)
				return kmm_cli_usage_error(
				    PROG, "unsupported --hash '%s' (sha256, sha384 or sha512)",
				    optarg);
			break;
		case OPT_KEYID:
			o.use_keyid = true;
			break;
		case OPT_NO_GLOB:
			literal = true;
			break;
		case 'o':
			output = optarg;
			break;
		default:
			r = common_option(opt, argc, argv);
			if (r >= 0)
				return r;
			break;
		}
	}
	if (!o.key_path)
		return kmm_cli_usage_error(PROG, "sign: --key is required");
	if (optind >= argc)
		return kmm_cli_usage_error(PROG, "sign: no module given");
	if (output && argc - optind != 1)
		return kmm_cli_usage_error(PROG, "sign: --output takes exactly one module");

	r = kmm_sign_expand_files(argv + optind, (size_t)(argc - optind), literal, &files,
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
		return kmm_cli_usage_error(PROG,
					   "sign: --output takes exactly one module, '%s' "
					   "matched %zu",
					   argv[optind], kmm_strv_length(files));
	if (!files[0])
		return KMM_EXIT_OK;
	return sign_files(&o, output, files, (int)kmm_strv_length(files));
}

/* scripts/sign-file's own command line, for scripts and Dockerfiles that call it. */
static int cmd_sign_file(int argc, char **argv)
{
	static const struct option options[] = { KMM_COMMON_LONG_OPTIONS, { 0 } };
	struct kmm_signer_options o = { 0 };
	int opt, r, n;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "hkdps:", options, NULL)) != -1) {
		switch (opt) {
		case 'k':
			o.use_keyid = true;
			break;
		case 'd':
		case 'p':
		case 's':
			return kmm_cli_usage_error(
			    PROG,
			    "sign-file: -%c is not supported; only the appended "
			    "signature (and -k) is",
			    opt);
		default:
			r = common_option(opt, argc, argv);
			if (r >= 0)
				return r;
			break;
		}
	}
	n = argc - optind;
	if (n != 4 && n != 5)
		return kmm_cli_usage_error(PROG,
					   "usage: sign-file [-k] HASH KEY CERT MODULE [DEST]");
	if (kmm_sign_hash_from_string(argv[optind], &o.hash) < 0)
		return kmm_cli_usage_error(PROG,
					   "sign-file: unsupported hash '%s' (sha256, sha384 "
					   "or sha512)",
					   argv[optind]);
	o.key_path = argv[optind + 1];
	o.cert_path = argv[optind + 2];
	return sign_files(&o, n == 5 ? argv[optind + 4] : NULL, argv + optind + 3, 1);
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option options[] = {
		KMM_COMMON_LONG_OPTIONS,
		{ "cert", required_argument, NULL, OPT_CERT },
		{ 0 },
	};
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *cert = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	const char *cert_path = NULL;
	int opt, r, status = KMM_EXIT_OK;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		if (opt == OPT_CERT) {
			cert_path = optarg;
			continue;
		}
		r = common_option(opt, argc, argv);
		if (r >= 0)
			return r;
	}
	if (!cert_path)
		return kmm_cli_usage_error(PROG, "verify: --cert is required");
	if (optind >= argc)
		return kmm_cli_usage_error(PROG, "verify: no module given");

	r = kmm_sign_cert_load(cert_path, &cert, &e);
	if (r < 0) {
		kmm_log(KMM_LOG_ERROR, "cannot load the certificate", "error", kmm_error_message(e),
			NULL);
		return KMM_EXIT_FAILURE;
	}
	for (int i = optind; i < argc; i++) {
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

	r = kmm_cli_parse_common(PROG, help, argc, argv, &first);
	if (r >= 0)
		return r;
	if (first >= argc)
		return kmm_cli_usage_error(PROG, "info: no module given");
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

static const struct kmm_cli_command commands[] = {
	{ "sign", "sign modules", cmd_sign },
	{ "sign-file", "sign one module with scripts/sign-file's arguments", cmd_sign_file },
	{ "verify", "check module signatures against a certificate", cmd_verify },
	{ "info", "describe module signatures", cmd_info },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return kmm_cli_dispatch(PROG, help, commands, argc, argv);
}
