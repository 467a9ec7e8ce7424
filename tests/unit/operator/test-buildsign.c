/* SPDX-License-Identifier: Apache-2.0 */
/* Build and sign pods: shape, builders, last-hash, names, shell quoting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/operator-buildsign.h"
#include "kmm/shared-json.h"

#define KERNEL "5.14.0-70.el9.x86_64"
#define IMAGE "registry:5000/ns1/kmm-ci:" KERNEL
#define KANIKO "gcr.io/kaniko-project/executor:v1.23.2"
#define SIGNER "127.0.0.1:5000/kmm/kmm-sign:1"

/*
 * One MBSC with one entry carrying both build and sign: the tests pick the
 * action and tweak fields. The build args name MOD_NAME (which kmm overrides)
 * between two of the user's own.
 */
static const char mbsc_json[] =
    "{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": \"ModuleBuildSignConfig\","
    " \"metadata\": {\"name\": \"kmm-ci\", \"namespace\": \"ns1\", \"uid\": \"uid-1\"},"
    " \"spec\": {\"imageRepoSecret\": {\"name\": \"pull\"}, \"pushBuiltImage\": true,"
    "  \"tolerations\": [{\"key\": \"k\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}],"
    "  \"images\": [{\"image\": \"" IMAGE "\", \"kernelVersion\": \"" KERNEL "\","
    "   \"action\": \"BuildImage\","
    "   \"registryTLS\": {\"insecure\": true, \"insecureSkipTLSVerify\": true},"
    "   \"build\": {\"dockerfileConfigMap\": {\"name\": \"df\"},"
    "    \"buildArgs\": [{\"name\": \"A\", \"value\": \"1\"}, {\"name\": \"MOD_NAME\", \"value\": "
    "\"evil\"}, {\"name\": \"B\", \"value\": \"2\"}],"
    "    \"secrets\": [{\"name\": \"s1\"}, {\"name\": \"s2\"}],"
    "    \"baseImageRegistryTLS\": {\"insecure\": true, \"insecureSkipTLSVerify\": true},"
    "    \"kanikoParams\": {\"tag\": \"debug\"}, \"selector\": {\"zone\": \"a\"}},"
    "   \"sign\": {\"keySecret\": {\"name\": \"key-s\"}, \"certSecret\": {\"name\": \"cert-s\"},"
    "    \"unsignedImageRegistryTLS\": {\"insecureSkipTLSVerify\": true},"
    "    \"filesToSign\": [\"/opt/lib/modules/" KERNEL "/kmm_ci_a.ko\","
    " \"/opt/lib/modules/*/kmm_ci_?.ko\"]}}]}}";

struct fixture {
	struct kmm_image_config *mbsc;
	struct kmm_buildsign_params p;
};

static int setup(void **state)
{
	_cleanup_json_ json_t *j = json_loads(mbsc_json, 0, NULL);
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(j);
	assert_non_null(f);
	assert_int_equal(kmm_image_config_from_json(j, 0, &f->mbsc, NULL), 0);
	assert_int_equal(f->mbsc->n_images, 1);
	f->p = (struct kmm_buildsign_params){
		.mbsc = f->mbsc,
		.image = &f->mbsc->images[0],
		.module_name = "kmm-ci",
		.build_image = KANIKO,
		.sign_image = SIGNER,
		.builder = KMM_BUILDER_KANIKO,
		.dockerfile = "FROM scratch\n",
		.key_digest = "aa",
		.cert_digest = "bb",
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kmm_image_config_free(f->mbsc);
	free(f);
	return 0;
}

static void set_action(struct fixture *f, const char *action)
{
	free(f->mbsc->images[0].action);
	f->mbsc->images[0].action = strdup(action);
	assert_non_null(f->mbsc->images[0].action);
}

static json_t *render(const struct kmm_buildsign_params *p)
{
	json_t *pod = NULL;
	struct kmm_error *err = NULL;

	assert_int_equal(kmm_buildsign_pod(p, &pod, &err), 0);
	assert_null(err);
	return pod;
}

/* Compares a JSON value with the JSON text `expected`. */
static void assert_json(const json_t *v, const char *expected)
{
	_cleanup_json_ json_t *e = json_loads(expected, JSON_DECODE_ANY, NULL);

	assert_non_null(e);
	if (!json_equal(v, e)) {
		_cleanup_free_ char *got = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);

		print_error("got      %s\nexpected %s\n", got ? got : "(null)", expected);
		fail();
	}
}

static const json_t *container(const json_t *pod)
{
	const json_t *cs = json_object_get(json_object_get(pod, "spec"), "containers");

	assert_int_equal(json_array_size(cs), 1);
	return json_array_get(cs, 0);
}

static const char *hash_of(const json_t *pod)
{
	const char *h = json_string_value(json_object_get(
	    json_object_get(json_object_get(pod, "metadata"), "annotations"), KMM_ANN_LAST_HASH));

	assert_non_null(h);
	return h;
}

static void test_kaniko_build_pod(void **state)
{
	struct fixture *f = *state;
	_cleanup_json_ json_t *pod = render(&f->p);
	const json_t *md = json_object_get(pod, "metadata");
	const json_t *spec = json_object_get(pod, "spec");
	const json_t *c = container(pod);

	assert_string_equal(json_string_value(json_object_get(pod, "kind")), "Pod");
	assert_string_equal(json_string_value(json_object_get(md, "name")),
			    "kmm-ci-build-5-14-0-70-el9-x86-64");
	assert_string_equal(json_string_value(json_object_get(md, "namespace")), "ns1");
	assert_json(json_object_get(md, "labels"),
		    "{\"kmm.node.kubernetes.io/module.name\": \"kmm-ci\","
		    " \"kmm.node.kubernetes.io/resource-type\": \"BuildImage\","
		    " \"kmm.node.kubernetes.io/target-kernel\": \"5-14-0-70-el9-x86-64\","
		    " \"app.kubernetes.io/name\": \"kmm\", \"app.kubernetes.io/component\": "
		    "\"BuildImage\", \"app.kubernetes.io/part-of\": \"kmm\"}");
	assert_json(json_object_get(md, "finalizers"),
		    "[\"kmm.node.kubernetes.io/gc-delay\", "
		    "\"kmm.node.kubernetes.io/job-event-finalizer\"]");
	assert_json(json_object_get(md, "ownerReferences"),
		    "[{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": "
		    "\"ModuleBuildSignConfig\", \"name\": \"kmm-ci\", \"uid\": \"uid-1\", "
		    "\"controller\": true, \"blockOwnerDeletion\": true}]");
	/* A build pod has the hash and nothing else in its annotations. */
	assert_int_equal(json_object_size(json_object_get(md, "annotations")), 1);
	assert_int_equal(strlen(hash_of(pod)), 64);

	assert_string_equal(json_string_value(json_object_get(spec, "restartPolicy")), "Never");
	assert_json(json_object_get(spec, "nodeSelector"), "{\"zone\": \"a\"}");
	assert_json(json_object_get(spec, "tolerations"),
		    "[{\"key\": \"k\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}]");
	assert_string_equal(json_string_value(json_object_get(c, "name")), "kaniko");
	assert_string_equal(json_string_value(json_object_get(c, "image")),
			    "gcr.io/kaniko-project/executor:debug");
	assert_json(json_object_get(c, "args"),
		    "[\"--destination\", \"" IMAGE "\", \"--insecure\", \"--skip-tls-verify\","
		    " \"--insecure-pull\", \"--skip-tls-verify-pull\","
		    " \"--build-arg\", \"A=1\", \"--build-arg\", \"MOD_NAME=kmm-ci\","
		    " \"--build-arg\", \"B=2\", \"--build-arg\", \"KERNEL_VERSION=" KERNEL "\","
		    " \"--build-arg\", \"KERNEL_FULL_VERSION=" KERNEL "\","
		    " \"--build-arg\", \"MOD_NAMESPACE=ns1\"]");
	assert_json(
	    json_object_get(c, "volumeMounts"),
	    "[{\"name\": \"dockerfile\", \"mountPath\": \"/workspace\", \"readOnly\": true},"
	    " {\"name\": \"lib-modules\", \"mountPath\": \"/host/lib/modules\", \"readOnly\": "
	    "true},"
	    " {\"name\": \"build-secret-0\", \"mountPath\": \"/run/secrets/s1\", \"readOnly\": "
	    "true},"
	    " {\"name\": \"build-secret-1\", \"mountPath\": \"/run/secrets/s2\", \"readOnly\": "
	    "true},"
	    " {\"name\": \"docker-config\", \"mountPath\": \"/kaniko/.docker\", \"readOnly\": "
	    "true}]");
	assert_json(
	    json_object_get(spec, "volumes"),
	    "[{\"name\": \"dockerfile\", \"configMap\": {\"name\": \"df\", \"items\": "
	    "[{\"key\": \"dockerfile\", \"path\": \"Dockerfile\"}]}},"
	    " {\"name\": \"lib-modules\", \"hostPath\": {\"path\": \"/lib/modules\"}},"
	    " {\"name\": \"build-secret-0\", \"secret\": {\"secretName\": \"s1\"}},"
	    " {\"name\": \"build-secret-1\", \"secret\": {\"secretName\": \"s2\"}},"
	    " {\"name\": \"docker-config\", \"secret\": {\"secretName\": \"pull\", \"items\": "
	    "[{\"key\": \".dockerconfigjson\", \"path\": \"config.json\"}]}}]");
}

static void test_kaniko_no_push_no_tls_no_extras(void **state)
{
	struct fixture *f = *state;
	struct kmm_module_image_spec *im = &f->mbsc->images[0];
	_cleanup_json_ json_t *pod = NULL;
	const json_t *spec;

	f->mbsc->push_built_image = false;
	im->build->base_image_registry_tls = (struct kmm_tls_options){ 0 };
	im->build->has_kaniko_params = false;
	kmm_strmap_done(&im->build->selector);
	free(f->mbsc->image_repo_secret);
	f->mbsc->image_repo_secret = NULL;
	pod = render(&f->p);
	spec = json_object_get(pod, "spec");
	assert_string_equal(json_string_value(json_object_get(container(pod), "image")), KANIKO);
	assert_json(json_array_get(json_object_get(container(pod), "args"), 0), "\"--no-push\"");
	assert_json(json_array_get(json_object_get(container(pod), "args"), 1), "\"--build-arg\"");
	assert_null(json_object_get(spec, "nodeSelector"));
	/* No pull secret, no docker-config volume. */
	assert_int_equal(json_array_size(json_object_get(spec, "volumes")), 4);
}

static void test_kaniko_tag_override(void **state)
{
	static const char *const cases[][2] = {
		{ "gcr.io/kaniko-project/executor:v1.23.2",
		  "gcr.io/kaniko-project/executor:debug" },
		{ "gcr.io/kaniko-project/executor", "gcr.io/kaniko-project/executor:debug" },
		{ "localhost:5000/executor", "localhost:5000/executor:debug" },
		{ "localhost:5000/executor:1@sha256:abcd", "localhost:5000/executor:debug" },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < KMM_ARRAY_SIZE(cases); i++) {
		_cleanup_json_ json_t *pod = NULL;

		f->p.build_image = cases[i][0];
		pod = render(&f->p);
		assert_string_equal(json_string_value(json_object_get(container(pod), "image")),
				    cases[i][1]);
	}
}

static void test_sign_dockerfile_kaniko(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *df = NULL;

	set_action(f, KMM_ACTION_SIGN);
	assert_int_equal(kmm_buildsign_sign_dockerfile(&f->p, &df, NULL), 0);
	/* The entry has a build: the unsigned image is the build's output, the same tag. */
	assert_string_equal(df, "FROM " IMAGE " AS source\n"
				"\n"
				"FROM " SIGNER " AS signimage\n"
				"COPY --from=source /opt /opt/opt\n"
				"RUN [\"/usr/local/bin/kmm-sign\",\"sign\",\"--key\","
				"\"/run/secrets/key/key.pem\",\"--cert\","
				"\"/run/secrets/cert/cert.pem\",\"/opt/opt/lib/modules/" KERNEL
				"/kmm_ci_a.ko\",\"/opt/opt/lib/modules/*/kmm_ci_?.ko\"]\n"
				"\n"
				"FROM source\n"
				"COPY --from=signimage /opt/opt /opt\n");
}

static void test_sign_dockerfile_unsigned_image_buildah_escaping(void **state)
{
	struct fixture *f = *state;
	struct kmm_module_image_spec *im = &f->mbsc->images[0];
	_cleanup_free_ char *df = NULL;
	struct kmm_error *err = NULL;

	set_action(f, KMM_ACTION_SIGN);
	kmm_build_free(im->build);
	im->build = NULL;
	im->sign->unsigned_image = strdup("reg/unsigned:1");
	free(im->dir_name);
	im->dir_name = strdup("/mods");
	free(im->sign->files_to_sign[1]);
	im->sign->files_to_sign[1] = strdup("/mods/a\"b\n\\c.ko");
	f->p.builder = KMM_BUILDER_BUILDAH;
	assert_int_equal(kmm_buildsign_sign_dockerfile(&f->p, &df, NULL), 0);
	assert_string_equal(df, "FROM reg/unsigned:1 AS source\n"
				"\n"
				"FROM " SIGNER " AS signimage\n"
				"COPY --from=source /mods /opt/mods\n"
				"RUN --mount=type=secret,id=key,target=/run/secrets/key/key.pem "
				"--mount=type=secret,id=cert,target=/run/secrets/cert/cert.pem "
				"[\"/usr/local/bin/kmm-sign\",\"sign\",\"--key\","
				"\"/run/secrets/key/key.pem\",\"--cert\","
				"\"/run/secrets/cert/cert.pem\",\"/opt/opt/lib/modules/" KERNEL
				"/kmm_ci_a.ko\",\"/opt/mods/a\\\"b\\n\\\\c.ko\"]\n"
				"\n"
				"FROM source\n"
				"COPY --from=signimage /opt/mods /mods\n");

	/* A newline in dirName would start a new Dockerfile instruction. */
	free(im->dir_name);
	im->dir_name = strdup("/mods\nRUN x");
	free(df);
	df = NULL;
	assert_int_equal(kmm_buildsign_sign_dockerfile(&f->p, &df, &err), -EINVAL);
	assert_null(df);
	assert_string_equal(kmm_error_message(err), "image " IMAGE ": bad dirName '/mods\nRUN x'");
	kmm_error_free(err);
}

static void test_kaniko_sign_pod(void **state)
{
	struct fixture *f = *state;
	_cleanup_json_ json_t *pod = NULL;
	_cleanup_free_ char *df = NULL;
	const json_t *md, *spec, *c;

	set_action(f, KMM_ACTION_SIGN);
	pod = render(&f->p);
	md = json_object_get(pod, "metadata");
	spec = json_object_get(pod, "spec");
	c = container(pod);
	assert_int_equal(kmm_buildsign_sign_dockerfile(&f->p, &df, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(md, "name")),
			    "kmm-ci-sign-5-14-0-70-el9-x86-64");
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "labels"),
							      KMM_LABEL_RESOURCE_TYPE)),
			    "SignImage");
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "annotations"),
							      KMM_ANN_DOCKERFILE)),
			    df);
	/* The sign pod runs wherever it may: no build selector. */
	assert_null(json_object_get(spec, "nodeSelector"));
	assert_string_equal(json_string_value(json_object_get(c, "image")), KANIKO);
	assert_json(json_object_get(c, "args"),
		    "[\"--destination\", \"" IMAGE "\", \"--insecure\", \"--skip-tls-verify\","
		    " \"--skip-tls-verify-pull\"]");
	assert_json(
	    json_object_get(c, "volumeMounts"),
	    "[{\"name\": \"dockerfile\", \"mountPath\": \"/workspace\", \"readOnly\": true},"
	    " {\"name\": \"key\", \"mountPath\": \"/run/secrets/key\", \"readOnly\": true},"
	    " {\"name\": \"cert\", \"mountPath\": \"/run/secrets/cert\", \"readOnly\": true},"
	    " {\"name\": \"docker-config\", \"mountPath\": \"/kaniko/.docker\", \"readOnly\": "
	    "true}]");
	assert_json(
	    json_object_get(spec, "volumes"),
	    "[{\"name\": \"dockerfile\", \"downwardAPI\": {\"items\": [{\"path\": "
	    "\"Dockerfile\", \"fieldRef\": {\"fieldPath\": "
	    "\"metadata.annotations['dockerfile']\"}}]}},"
	    " {\"name\": \"key\", \"secret\": {\"secretName\": \"key-s\", \"items\": "
	    "[{\"key\": \"key\", \"path\": \"key.pem\"}]}},"
	    " {\"name\": \"cert\", \"secret\": {\"secretName\": \"cert-s\", \"items\": "
	    "[{\"key\": \"cert\", \"path\": \"cert.pem\"}]}},"
	    " {\"name\": \"docker-config\", \"secret\": {\"secretName\": \"pull\", \"items\": "
	    "[{\"key\": \".dockerconfigjson\", \"path\": \"config.json\"}]}}]");
}

static const char *script_of(const json_t *pod)
{
	const json_t *c = container(pod);

	assert_string_equal(json_string_value(json_object_get(c, "name")), "buildah");
	assert_json(json_object_get(c, "command"), "[\"/bin/sh\", \"-c\"]");
	/* The whole context is test-podsecurity's: here only that it is not privileged. */
	assert_null(json_object_get(json_object_get(c, "securityContext"), "privileged"));
	assert_int_equal(json_array_size(json_object_get(c, "args")), 1);
	return json_string_value(json_array_get(json_object_get(c, "args"), 0));
}

static void test_buildah_build_pod(void **state)
{
	struct fixture *f = *state;
	_cleanup_json_ json_t *pod = NULL, *kaniko = render(&f->p);

	f->p.builder = KMM_BUILDER_BUILDAH;
	f->p.build_image = "quay.io/buildah/stable:v1";
	pod = render(&f->p);
	/* Same identity and volumes as kaniko's pod. */
	assert_true(json_equal(json_object_get(json_object_get(pod, "metadata"), "labels"),
			       json_object_get(json_object_get(kaniko, "metadata"), "labels")));
	assert_true(json_equal(json_object_get(json_object_get(pod, "spec"), "volumes"),
			       json_object_get(json_object_get(kaniko, "spec"), "volumes")));
	assert_true(json_equal(json_object_get(container(pod), "volumeMounts"),
			       json_object_get(container(kaniko), "volumeMounts")));
	/* kanikoParams.tag is kaniko's. */
	assert_string_equal(json_string_value(json_object_get(container(pod), "image")),
			    "quay.io/buildah/stable:v1");
	assert_string_equal(
	    script_of(pod),
	    "set -e\n"
	    "buildah --storage-driver vfs bud --isolation chroot --tls-verify=false"
	    " --authfile /kaniko/.docker/config.json --build-arg 'A=1' --build-arg "
	    "'MOD_NAME=kmm-ci'"
	    " --build-arg 'B=2' --build-arg 'KERNEL_VERSION=" KERNEL "'"
	    " --build-arg 'KERNEL_FULL_VERSION=" KERNEL "' --build-arg 'MOD_NAMESPACE=ns1'"
	    " -f /workspace/Dockerfile -t '" IMAGE "' /workspace\n"
	    "buildah --storage-driver vfs push --tls-verify=false"
	    " --authfile /kaniko/.docker/config.json '" IMAGE "' 'docker://" IMAGE "'\n");
}

static void test_buildah_sign_pod_no_push(void **state)
{
	struct fixture *f = *state;
	_cleanup_json_ json_t *pod = NULL;

	set_action(f, KMM_ACTION_SIGN);
	f->p.builder = KMM_BUILDER_BUILDAH;
	f->mbsc->push_built_image = false;
	f->mbsc->images[0].sign->unsigned_image_registry_tls = (struct kmm_tls_options){ 0 };
	free(f->mbsc->image_repo_secret);
	f->mbsc->image_repo_secret = NULL;
	pod = render(&f->p);
	assert_string_equal(script_of(pod),
			    "set -e\n"
			    "buildah --storage-driver vfs bud --isolation chroot"
			    " --secret id=key,src=/run/secrets/key/key.pem"
			    " --secret id=cert,src=/run/secrets/cert/cert.pem"
			    " -f /workspace/Dockerfile -t '" IMAGE "' /workspace\n");
}

/* Runs `sh -c "<script>"` with printf as buildah and returns what it printed. */
static char *run_with_fake_buildah(const char *script)
{
	char dir[] = "/tmp/kmm-buildsign-XXXXXX", path[64], out[64];
	_cleanup_free_ char *text = NULL;
	_cleanup_fclose_ FILE *fp = NULL;
	size_t n = 0;
	int status;
	pid_t pid;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/buildah", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	fp = fopen(path, "we");
	assert_non_null(fp);
	/* One argument per line, NUL-free; the file shows exactly what buildah would get. */
	fprintf(fp, "#!/bin/sh\nfor a in \"$@\"; do printf '<%%s>\\n' \"$a\"; done >>%s\n", out);
	assert_int_equal(fclose(TAKE_PTR(fp)), 0);
	assert_int_equal(chmod(path, 0700), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("PATH", dir, 1);
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fp = fopen(out, "re");
	assert_non_null(fp);
	text = calloc(1, 65536);
	assert_non_null(text);
	n = fread(text, 1, 65535, fp);
	text[n] = '\0';
	unlink(out);
	unlink(path);
	rmdir(dir);
	return TAKE_PTR(text);
}

static void test_buildah_hostile_build_args(void **state)
{
	struct fixture *f = *state;
	struct kmm_build *b = f->mbsc->images[0].build;
	_cleanup_json_ json_t *pod = NULL;
	_cleanup_free_ char *argv = NULL;
	const char *hostile = "x' ; touch /tmp/pwned ; echo '\n$(id) `id` \"q\" \\ *";

	free(b->build_args[0].value);
	b->build_args[0].value = strdup(hostile);
	free(f->mbsc->images[0].image);
	/* The image is a value too: odd but quoted all the same. */
	f->mbsc->images[0].image = strdup("reg/a'b:$(id)");
	f->p.builder = KMM_BUILDER_BUILDAH;
	pod = render(&f->p);
	argv = run_with_fake_buildah(script_of(pod));
	/* Each value arrives as one intact argument; nothing ran. */
	assert_non_null(strstr(
	    argv, "<--build-arg>\n<A=x' ; touch /tmp/pwned ; echo '\n$(id) `id` \"q\" \\ *>\n"
		  "<--build-arg>\n<MOD_NAME=kmm-ci>\n"));
	assert_non_null(strstr(argv, "<-t>\n<reg/a'b:$(id)>\n</workspace>\n"));
	assert_non_null(strstr(argv, "<push>\n<--tls-verify=false>\n<--authfile>\n"
				     "</kaniko/.docker/config.json>\n<reg/a'b:$(id)>\n"
				     "<docker://reg/a'b:$(id)>\n"));
}

static void test_shell_quote(void **state)
{
	static const char *const cases[][2] = {
		{ "", "''" },
		{ "plain", "'plain'" },
		{ "it's", "'it'\\''s'" },
		{ "''", "''\\'''\\'''" },
		{ "$(id)`x`\n\"\\", "'$(id)`x`\n\"\\'" },
	};

	for (size_t i = 0; i < KMM_ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *q = kmm_shell_quote(cases[i][0]);
		_cleanup_free_ char *script = NULL, *got = NULL;

		assert_string_equal(q, cases[i][1]);
		/* And the shell agrees: it gives back the original bytes. */
		assert_true(asprintf(&script, "buildah %s", q) > 0);
		got = run_with_fake_buildah(script);
		assert_true(strlen(got) == strlen(cases[i][0]) + 3);
		assert_memory_equal(got + 1, cases[i][0], strlen(cases[i][0]));
	}
}

static void test_hash_stable_and_sensitive(void **state)
{
	struct fixture *f = *state;
	_cleanup_json_ json_t *b1 = NULL, *b2 = NULL, *b3 = NULL, *b4 = NULL;
	_cleanup_json_ json_t *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL, *s5 = NULL;

	b1 = render(&f->p);
	b2 = render(&f->p);
	assert_string_equal(hash_of(b1), hash_of(b2));
	/* The same pod rendered from the same inputs in another process: same text. */
	assert_true(json_equal(b1, b2));
	/* Key and cert do not concern a build. */
	f->p.key_digest = "other";
	b3 = render(&f->p);
	assert_string_equal(hash_of(b1), hash_of(b3));
	f->p.dockerfile = "FROM scratch\nRUN true\n";
	b4 = render(&f->p);
	assert_string_not_equal(hash_of(b1), hash_of(b4));

	set_action(f, KMM_ACTION_SIGN);
	f->p.key_digest = "aa";
	s1 = render(&f->p);
	f->p.dockerfile = "FROM other\n"; /* a sign pod does not use the ConfigMap */
	s2 = render(&f->p);
	assert_string_equal(hash_of(s1), hash_of(s2));
	f->p.key_digest = "ab";
	s3 = render(&f->p);
	assert_string_not_equal(hash_of(s1), hash_of(s3));
	f->p.key_digest = "aa";
	f->p.cert_digest = "bc";
	s4 = render(&f->p);
	assert_string_not_equal(hash_of(s1), hash_of(s4));
	assert_string_not_equal(hash_of(s3), hash_of(s4));
	/* A spec change (here the pushed tag) changes it too. */
	f->p.cert_digest = "bb";
	f->mbsc->push_built_image = false;
	s5 = render(&f->p);
	assert_string_not_equal(hash_of(s1), hash_of(s5));
}

static void test_hash_excludes_itself(void **state)
{
	struct fixture *f = *state;
	_cleanup_json_ json_t *pod = render(&f->p);
	_cleanup_json_ json_t *again = NULL;
	json_t *ann = json_object_get(json_object_get(pod, "metadata"), "annotations");

	/* Rendering never looks at an old hash: feeding the pod back changes nothing. */
	assert_int_equal(json_object_del(ann, KMM_ANN_LAST_HASH), 0);
	again = render(&f->p);
	json_object_del(json_object_get(json_object_get(again, "metadata"), "annotations"),
			KMM_ANN_LAST_HASH);
	assert_true(json_equal(pod, again));
}

static void test_dns_kernel(void **state)
{
	static const char *const cases[][2] = {
		{ "5.14.0-70.el9.x86_64", "5-14-0-70-el9-x86-64" },
		{ "6.1.0-27-amd64+", "6-1-0-27-amd64" },
		{ "6.1.0-27+DEB_rt", "6-1-0-27deb-rt" },
		{ "-_.X.", "x" },
		{ "+++", "" },
		{ "", "" },
	};
	char long_kernel[200];

	for (size_t i = 0; i < KMM_ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *k = kmm_buildsign_dns_kernel(cases[i][0]);

		assert_string_equal(k, cases[i][1]);
	}
	/* Cut at 63, and a cut that ends on '-' drops it. */
	memset(long_kernel, 'a', sizeof(long_kernel));
	long_kernel[62] = '.';
	long_kernel[sizeof(long_kernel) - 1] = '\0';
	{
		_cleanup_free_ char *k = kmm_buildsign_dns_kernel(long_kernel);

		assert_int_equal(strlen(k), 62);
		assert_int_equal(strspn(k, "a"), 62);
	}
}

static void test_pod_names(void **state)
{
	_cleanup_free_ char *b = kmm_buildsign_pod_name("m", KMM_ACTION_BUILD, "6.1.0-27-amd64+");
	_cleanup_free_ char *s = kmm_buildsign_pod_name("m", KMM_ACTION_SIGN, "6.1.0_RT");
	_cleanup_free_ char *bad = kmm_buildsign_pod_name("m", "Load", "6.1");
	_cleanup_free_ char *mbsc = calloc(1, 251);
	_cleanup_free_ char *longname = NULL;

	assert_string_equal(b, "m-build-6-1-0-27-amd64");
	assert_string_equal(s, "m-sign-6-1-0-rt");
	assert_null(bad);
	assert_non_null(mbsc);
	memset(mbsc, 'm', 250);
	longname = kmm_buildsign_pod_name(mbsc, KMM_ACTION_BUILD, "6.1");
	/* 250 + "-bu" is 253; the cut never leaves a trailing '-'. */
	assert_int_equal(strlen(longname), 253);
	assert_string_equal(longname + 250, "-bu");
	free(mbsc);
	mbsc = calloc(1, 253);
	assert_non_null(mbsc);
	memset(mbsc, 'm', 252);
	free(longname);
	/* 252 + "-" is 253: the cut would end on '-', which is dropped. */
	longname = kmm_buildsign_pod_name(mbsc, KMM_ACTION_SIGN, "6.1");
	assert_int_equal(strlen(longname), 252);
	assert_int_equal(strspn(longname, "m"), 252);
}

static void test_bad_inputs(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	json_t *pod = NULL;

	f->p.build_image = NULL;
	assert_int_equal(kmm_buildsign_pod(&f->p, &pod, &err), -EINVAL);
	assert_null(pod);
	assert_string_equal(kmm_error_message(err), "no build image (RELATED_IMAGE_BUILD)");
	kmm_error_free(err);
	err = NULL;

	f->p.build_image = KANIKO;
	set_action(f, KMM_ACTION_SIGN);
	f->p.sign_image = NULL;
	assert_int_equal(kmm_buildsign_pod(&f->p, &pod, &err), -EINVAL);
	assert_string_equal(kmm_error_message(err), "no usable sign image (RELATED_IMAGE_SIGN)");
	kmm_error_free(err);
	err = NULL;

	f->p.sign_image = SIGNER;
	free(f->mbsc->images[0].kernel_version);
	f->mbsc->images[0].kernel_version = strdup("+++");
	assert_int_equal(kmm_buildsign_pod(&f->p, &pod, &err), -EINVAL);
	assert_string_equal(kmm_error_message(err),
			    "image " IMAGE ": kernel '+++' has no DNS-safe form");
	kmm_error_free(err);
	err = NULL;

	set_action(f, "Frobnicate");
	assert_int_equal(kmm_buildsign_pod(&f->p, &pod, &err), -EINVAL);
	assert_string_equal(kmm_error_message(err), "image " IMAGE ": unknown action 'Frobnicate'");
	kmm_error_free(err);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_kaniko_build_pod),
		T(test_kaniko_no_push_no_tls_no_extras),
		T(test_kaniko_tag_override),
		T(test_sign_dockerfile_kaniko),
		T(test_sign_dockerfile_unsigned_image_buildah_escaping),
		T(test_kaniko_sign_pod),
		T(test_buildah_build_pod),
		T(test_buildah_sign_pod_no_push),
		T(test_buildah_hostile_build_args),
		cmocka_unit_test(test_shell_quote),
		T(test_hash_stable_and_sensitive),
		T(test_hash_excludes_itself),
		cmocka_unit_test(test_dns_kernel),
		cmocka_unit_test(test_pod_names),
		T(test_bad_inputs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
