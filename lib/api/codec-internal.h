/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to lib/api: the one engine that decodes, encodes and frees every
 * kind of kmm.sigs.x-k8s.io. A kind (or a struct inside one) is described by
 * a `struct codec`: a table of fields, each a JSON key, a type, the offset of
 * the C member that holds it, flags and optional hooks. The engine walks that
 * table; nothing else in lib/api decodes or encodes a struct by hand.
 *
 * Decoding follows decode.h's conventions: a failure returns -EINVAL (or
 * -ENOMEM) with a message that starts with the field's JSON path. The struct
 * being decoded must start zeroed; on failure it holds what was decoded so
 * far, which codec_free() releases.
 *
 * Encoding writes the keys kept in `unknown` first, then the table's fields
 * in table order (upstream's Go field order, which is what json.Marshal
 * writes), leaving out empty values unless the field says otherwise.
 */
#ifndef KMM_LIB_API_CODEC_INTERNAL_H
#define KMM_LIB_API_CODEC_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/api/decode.h"

enum codec_type {
	CODEC_STRING,	   /* char * */
	CODEC_BOOL,	   /* bool */
	CODEC_INT32,	   /* int32_t, values outside int32 rejected */
	CODEC_INT64,	   /* int64_t */
	CODEC_STRV,	   /* char ** ([]string) */
	CODEC_STRMAP,	   /* struct kmm_strmap (map[string]string) */
	CODEC_LOCAL_REF,   /* char *: a LocalObjectReference's name ("" when it has none) */
	CODEC_LOCAL_REFS,  /* char **: the names of a []LocalObjectReference */
	CODEC_JSON_ARRAY,  /* json_t * (one reference), passed through */
	CODEC_JSON_OBJECT, /* json_t * (one reference), passed through */
	CODEC_CONST,	   /* no member: checked before decoding, written as .text */
	CODEC_METADATA,	   /* ObjectMeta: json_t * at .offset, name and the rest per .meta */
	CODEC_OBJECT,	   /* a struct embedded at .offset (see .nested) */
	CODEC_OBJECT_PTR,  /* a pointer to a struct, allocated when the key is present */
	CODEC_ARRAY,	   /* a pointer to structs, their number (size_t) at .count */
	CODEC_CUSTOM,	   /* .custom's hooks */
};

enum {
	/* Absent or null fails with "required field is missing". */
	CODEC_REQUIRED = 1 << 0,
	/* Written even when empty (a Go field without omitempty). */
	CODEC_ALWAYS = 1 << 1,
	/* A bool at .has records presence; the field is written when it is set. */
	CODEC_HAS = 1 << 2,
	/* CODEC_STRING: .def also replaces "" (not only an absent value). */
	CODEC_DEFAULT_EMPTY = 1 << 3,
	/* CODEC_STRING: "" passes the .one_of check. */
	CODEC_EMPTY_OK = 1 << 4,
	/* CODEC_STRING: .def and .one_of apply after the object's other fields. */
	CODEC_LATE = 1 << 5,
	/* CODEC_ARRAY: "expected an array, got <type>" rather than "expected an array". */
	CODEC_SAY_TYPE = 1 << 6,
};

struct codec;

/* CODEC_METADATA: where the kind keeps what metadata holds. */
struct codec_meta {
	bool namespaced;
	size_t name;
	bool has_namespace, has_generation;
	size_t namespace, generation;
};

/*
 * CODEC_CUSTOM. decode gets the object holding the key; encode adds the key
 * to `o` (or not) and returns 0 or -ENOMEM; free (may be NULL) releases what
 * decode stored.
 */
struct codec_custom {
	int (*decode)(struct dec *d, const json_t *obj, const char *path, const char *key,
		      void *base);
	int (*encode)(json_t *o, const char *key, const void *base, unsigned variant);
	void (*free)(void *base);
};

/* Runs on the struct being decoded (`path` is its JSON path); 0 or a dec_fail(). */
typedef int (*codec_check_fn)(struct dec *d, void *base, const char *path);

struct codec_field {
	const char *key;
	enum codec_type type;
	size_t offset;
	unsigned flags;
	/*
	 * The variants (a bit each, defined by the kind: MIC/MBSC, spec/status
	 * entries, device plugin/DRA, PFV v1beta1/v1beta2) the field belongs to;
	 * 0 for all of them. A field outside the current variant is unknown.
	 */
	unsigned variants;
	size_t has;			   /* CODEC_HAS */
	size_t count;			   /* CODEC_ARRAY */
	size_t min_items;		   /* CODEC_ARRAY */
	const char *def;		   /* CODEC_STRING: the CRD default, for an absent value */
	const char *const *one_of;	   /* CODEC_STRING: the values allowed, NULL-terminated */
	const char *text;		   /* CODEC_CONST */
	const struct codec *nested;	   /* CODEC_OBJECT, CODEC_OBJECT_PTR, CODEC_ARRAY */
	unsigned nested_variant;	   /* the variant inside .nested; 0 keeps the current one */
	const struct codec_meta *meta;	   /* CODEC_METADATA */
	const struct codec_custom *custom; /* CODEC_CUSTOM */
	/* Runs right after the field decodes (a rule that spans fields). */
	codec_check_fn check;
};

struct codec {
	const struct codec_field *fields;
	size_t n_fields;
	size_t size; /* of the struct, for CODEC_OBJECT_PTR and CODEC_ARRAY */
	/* Offset of the `json_t *unknown` that keeps keys the table does not know... */
	size_t unknown;
	/* ...or none: unknown keys are dropped (still an error in strict mode). */
	bool drop_unknown;
	/* "expected an object" for a value that is not one, without its type. */
	bool terse;
	/*
	 * The order fields are decoded in when it differs from the table's
	 * (NULL-terminated keys): it decides which error a document with
	 * several reports first.
	 */
	const char *const *decode_order;
	/* Runs after every field decoded: defaults and rules that span fields. */
	codec_check_fn finish;
};

/* A table entry: key, type and member, then any other member by name (.flags = ...). */
#define FIELD(k, t, off, ...)                                                                      \
	{                                                                                          \
		.key = (k), .type = (t), .offset = (off), __VA_ARGS__                              \
	}
/* The offset of a member of struct kmm_<type>. */
#define OF(type, member) offsetof(struct kmm_##type, member)

/* Decodes the object `obj` (its path `path`) into `base` as `c` describes. */
int codec_decode(struct dec *d, const struct codec *c, const json_t *obj, const char *path,
		 void *base);
/*
 * Allocates a zeroed c->size struct and decodes `obj` into it (a non-object
 * fails as an array element would); *ret is written only on success.
 */
int codec_decode_new(struct dec *d, const struct codec *c, const json_t *obj, const char *path,
		     void **ret);
/* A new JSON object, or NULL on ENOMEM. */
json_t *codec_encode(const struct codec *c, const void *base, unsigned variant);
/* A new JSON array of n structs of c->size at `items`, or NULL on ENOMEM. */
json_t *codec_encode_array(const struct codec *c, const void *items, size_t n, unsigned variant);
/* Releases what the struct's members own (not the struct itself). */
void codec_free(const struct codec *c, void *base, unsigned variant);

/* The codecs shared between kinds. */
extern const struct codec codec_toleration;
extern const struct codec codec_tls;
extern const struct codec codec_build;
extern const struct codec codec_sign;
extern const struct codec codec_modprobe;
extern const struct codec codec_module_config;
/* imagePullPolicy's values. */
extern const char *const codec_pull_policies[];

#endif
