/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pieces of lib/kmod that unit tests reach directly (built extern with
 * KMM_TESTING, see lib/meson.build).
 */
#ifndef KMM_LIB_KMOD_INTERNAL_H
#define KMM_LIB_KMOD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "kmm/shared-buf.h"
#include "lib/testable.h"

/* Where the kernel log is read from while a module is inserted. */
#define KMM_KMSG_PATH "/dev/kmsg"

/*
 * A window on the kernel log: opened (positioned at the end) before a kernel
 * call, read after it to collect what the kernel said meanwhile. fd is -1 when
 * the log is not readable; collecting then yields nothing.
 */
struct kmm_kmsg {
	int fd;
};

void kmm_kmsg_open(struct kmm_kmsg *m);
void kmm_kmsg_close(struct kmm_kmsg *m);

/*
 * Appends to `out` the messages logged since kmm_kmsg_open(), joined by " | ",
 * at most `max_lines` of them, skipping the kernel's continuation fields.
 * Lines are shortened to 240 bytes. Returns the number of lines appended.
 */
unsigned kmm_kmsg_collect(struct kmm_kmsg *m, struct kmm_buf *out, unsigned max_lines);

#ifdef KMM_TESTING
/* Static in the product library; extern for unit tests. */

/*
 * Parses one /dev/kmsg record ("prio,seq,usec,flags;text") and returns a
 * pointer to its text, or NULL if `record` is not such a record. The text
 * runs up to the first newline or the end.
 */
const char *kmm_kmsg_record_text(const char *record);

/*
 * The kernel release a vermagic string was built for: its first word, copied
 * into buf (size n). Returns buf, or NULL for an empty vermagic.
 */
const char *kmm_vermagic_release(const char *vermagic, char *buf, size_t n);

/* True if base (a file name) names module `name`: "<name>.ko" followed by anything. */
bool kmm_in_tree_name_matches(const char *base, const char *name);

/*
 * True if a link at directory `rel_dir` of a firmware tree (relative to the
 * tree's top, "" for the top) with `target` resolves, by its text alone,
 * inside the tree: relative, and never more ".." than directories above it.
 */
bool kmm_firmware_link_stays_inside(const char *rel_dir, const char *target);
#endif

#endif
