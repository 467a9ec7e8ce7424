/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in kernel module for the unit tests: an ELF relocatable object with
 * a .modinfo section (name, vermagic, depends) that libkmod and depmod read,
 * and optionally an exported or an imported symbol so depmod computes the
 * dependency. Compiled once per fixture with -DNAME=... (tests/unit/kmod/meson.build).
 */
#define KMM_S(x) #x
#define KMM_STR(x) KMM_S(x)

__attribute__((section(".modinfo"), used, aligned(1))) static const char kmm_modinfo[] =
    "name=" KMM_STR(NAME) "\0vermagic=" VERMAGIC " SMP preempt mod_unload\0depends=" DEPENDS
			  "\0license=GPL";

#ifdef EXPORTS
__attribute__((section("__ksymtab_strings"), used, aligned(1))) static const char kmm_ksym[] =
    KMM_STR(EXPORTS);
int EXPORTS(int a);
int EXPORTS(int a)
{
	return a;
}
#endif

#ifdef USES
extern int USES(int);
int (*kmm_use)(int);
int (*kmm_use)(int) = USES;
#endif
