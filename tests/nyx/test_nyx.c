/*
 * libnyx.so as afl-fuzz sees it (dlopen, the functions it resolves by name),
 * the share directory, and `rewind fuzz-share` / `fuzz-replay`.
 *
 * The tests that start no VM run anywhere; the others call
 * rw_test_require_kvm() first.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "nyx.h"
#include "testutil.h"

/* ------------------------------------------------------------ loading */

/* What Debian 12's afl-fuzz (AFL++ 4.04c) resolves; it refuses a libnyx.so
   that lacks one. */
static const char *const afl_404c[] = {
	"nyx_new", "nyx_new_parent", "nyx_new_child", "nyx_shutdown", "nyx_option_set_reload_mode",
	"nyx_option_set_timeout", "nyx_option_apply", "nyx_set_afl_input", "nyx_exec",
	"nyx_get_bitmap_buffer", "nyx_get_bitmap_buffer_size", "nyx_get_aux_string",
};

/* What later AFL++ resolves on top of the common ones. */
static const char *const afl_current[] = {
	"nyx_config_load", "nyx_config_set_workdir_path", "nyx_config_set_input_buffer_size",
	"nyx_config_set_input_buffer_write_protection", "nyx_config_set_hprintf_fd",
	"nyx_config_set_process_role", "nyx_config_set_reuse_snapshot_path", "nyx_new",
	"nyx_remove_work_dir", "nyx_config_set_aux_buffer_size", "nyx_get_target_hash64",
	"nyx_config_free", "nyx_get_input_buffer",
};

static void *lib;

/* The library's functions, resolved the way afl-fuzz does. */
static struct {
	nyx_new_sharedir_fn *new_dir;
	nyx_new_config_fn *new_cfg;
	void *(*new_parent)(const char *, const char *, uint32_t, uint32_t, bool);
	void *(*new_child)(const char *, const char *, uint32_t, uint32_t);
	void (*shutdown)(void *);
	void (*set_reload)(void *, bool);
	void (*set_timeout)(void *, uint8_t, uint32_t);
	void (*apply)(void *);
	void (*set_input)(void *, uint8_t *, uint32_t);
	enum NyxReturnValue (*exec)(void *);
	uint8_t *(*bitmap)(void *);
	size_t (*bitmap_size)(void *);
	uint32_t (*aux)(void *, uint8_t *, uint32_t);
	uint8_t *(*input_buffer)(void *);
	void *(*cfg_load)(const char *);
	void (*cfg_free)(void *);
	void (*cfg_workdir)(void *, const char *);
	void (*cfg_input_size)(void *, uint32_t);
	void (*cfg_wp)(void *, bool);
	void (*cfg_hprintf)(void *, int32_t);
	void (*cfg_role)(void *, enum NyxProcessRole);
	void (*cfg_reuse)(void *, const char *);
	bool (*cfg_aux_size)(void *, uint32_t);
	uint64_t (*hash)(void *);
	bool (*rm_workdir)(const char *);
} nyx;

static void *sym(const char *name)
{
	void *p = dlsym(lib, name);

	cr_assert_not_null(p, "libnyx.so does not export %s", name);
	return p;
}

static void load(void)
{
	lib = dlopen(NYX_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	cr_assert_not_null(lib, "dlopen %s: %s", NYX_LIBRARY, dlerror());
	nyx.new_dir = (nyx_new_sharedir_fn *)sym("nyx_new");
	nyx.new_cfg = (nyx_new_config_fn *)sym("nyx_new");
	nyx.new_parent = sym("nyx_new_parent");
	nyx.new_child = sym("nyx_new_child");
	nyx.shutdown = sym("nyx_shutdown");
	nyx.set_reload = sym("nyx_option_set_reload_mode");
	nyx.set_timeout = sym("nyx_option_set_timeout");
	nyx.apply = sym("nyx_option_apply");
	nyx.set_input = sym("nyx_set_afl_input");
	nyx.exec = sym("nyx_exec");
	nyx.bitmap = sym("nyx_get_bitmap_buffer");
	nyx.bitmap_size = sym("nyx_get_bitmap_buffer_size");
	nyx.aux = sym("nyx_get_aux_string");
	nyx.input_buffer = sym("nyx_get_input_buffer");
	nyx.cfg_load = sym("nyx_config_load");
	nyx.cfg_free = sym("nyx_config_free");
	nyx.cfg_workdir = sym("nyx_config_set_workdir_path");
	nyx.cfg_input_size = sym("nyx_config_set_input_buffer_size");
	nyx.cfg_wp = sym("nyx_config_set_input_buffer_write_protection");
	nyx.cfg_hprintf = sym("nyx_config_set_hprintf_fd");
	nyx.cfg_role = sym("nyx_config_set_process_role");
	nyx.cfg_reuse = sym("nyx_config_set_reuse_snapshot_path");
	nyx.cfg_aux_size = sym("nyx_config_set_aux_buffer_size");
	nyx.hash = sym("nyx_get_target_hash64");
	nyx.rm_workdir = sym("nyx_remove_work_dir");
}

static void unload(void)
{
	if (lib)
		dlclose(lib);
	lib = NULL;
}

TestSuite(nyx, .init = load, .fini = unload);
TestSuite(nyx_kvm, .init = load, .fini = unload);
TestSuite(fuzz_share, .init = load, .fini = unload);
TestSuite(fuzz_replay, .init = load, .fini = unload);

/* ----------------------------------------------------------- helpers */

/* stderr into a file while a call runs, so a test can read what it said. */
static int saved_err = -1;
static char capture_path[4096];

static void capture_begin(void)
{
	if (!capture_path[0])
		snprintf(capture_path, sizeof(capture_path), "%s/stderr", rw_test_tmpdir("nyx-err"));
	int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	fflush(stderr);
	saved_err = dup(2);
	cr_assert_geq(saved_err, 0);
	cr_assert_eq(dup2(fd, 2), 2);
	close(fd);
}

/* What was said since capture_begin() (malloc'ed); stderr is back. */
static char *capture_end(void)
{
	fflush(stderr);
	dup2(saved_err, 2);
	close(saved_err);
	saved_err = -1;
	FILE *f = fopen(capture_path, "r");
	cr_assert_not_null(f);
	char *buf = calloc(1, 1 << 16);
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static void put(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void put_str(const char *dir, const char *name, const char *text)
{
	put(dir, name, text, strlen(text));
}

static void copy_guest(const char *dir, const char *guest, const char *as)
{
	FILE *f = fopen(rw_test_guest(guest), "rb");
	static char buf[8 << 20];

	cr_assert_not_null(f, "%s", rw_test_guest(guest));
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	put(dir, as, buf, n);
}

/*
 * A share directory for guest (a name under build/guest), written by hand
 * the way fuzz-share writes it; extra is more JSON members (", ...").
 */
static const char *share(const char *guest, const char *extra)
{
	const char *dir = rw_test_tmpdir("share");
	char json[1024];

	copy_guest(dir, guest, "guest.elf");
	snprintf(json, sizeof(json), "{\"rewind_share\": 1, \"kernel\": \"guest.elf\"%s}\n",
		 extra ? extra : "");
	put_str(dir, "rewind.json", json);
	put_str(dir, "config.ron", "()\n");
	return dir;
}

/* nyx_new (AFL++ 4.04c's form) on dir: NULL, and what it said. */
static char *new_dir_fails(const char *dir)
{
	capture_begin();
	void *r = nyx.new_dir(dir, "/nonexistent/workdir", 0, 1 << 20, true);
	char *said = capture_end();

	cr_assert_null(r, "nyx_new accepted %s", dir ? dir : "(null)");
	return said;
}

static void expect_said(const char *said, const char *what)
{
	cr_assert_not_null(strstr(said, what), "expected \"%s\" in: %s", what, said);
}

/* nyx_new on dir fails, and what it says names both what and why. */
static void new_dir_says(const char *dir, const char *what, const char *why)
{
	char *said = new_dir_fails(dir);

	expect_said(said, what);
	expect_said(said, why);
	free(said);
}

/* ------------------------------------------------------ no VM needed */

/* Every global symbol the file defines, from its .dynsym. */
static void defined_symbols(const char *path, void (*each)(const char *name))
{
	int fd = open(path, O_RDONLY);
	struct stat st;

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	uint8_t *img = malloc((size_t)st.st_size);
	cr_assert_eq(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
	const Elf64_Shdr *sh = (const Elf64_Shdr *)(img + eh->e_shoff);
	unsigned found = 0;

	for (unsigned i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != SHT_DYNSYM)
			continue;
		const Elf64_Sym *syms = (const Elf64_Sym *)(img + sh[i].sh_offset);
		const char *strtab = (const char *)(img + sh[sh[i].sh_link].sh_offset);
		for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); k++) {
			unsigned bind = ELF64_ST_BIND(syms[k].st_info);
			if (syms[k].st_shndx == SHN_UNDEF || (bind != STB_GLOBAL && bind != STB_WEAK))
				continue;
			each(strtab + syms[k].st_name);
			found++;
		}
	}
	free(img);
	cr_assert_gt(found, 0, "no defined dynamic symbols in %s", path);
}

static void only_nyx(const char *name)
{
	cr_assert_eq(strncmp(name, "nyx_", 4), 0, "libnyx.so exports %s", name);
}

Test(nyx, exports_what_afl_resolves_and_only_nyx)
{
	for (size_t i = 0; i < sizeof(afl_404c) / sizeof(afl_404c[0]); i++)
		sym(afl_404c[i]);
	for (size_t i = 0; i < sizeof(afl_current) / sizeof(afl_current[0]); i++)
		sym(afl_current[i]);
	defined_symbols(NYX_LIBRARY, only_nyx);
	/* the share directory's code is inside, hidden */
	cr_assert_null(dlsym(lib, "fuzz_share_load"));
}

Test(nyx, return_values_are_libnyx_s)
{
	/* libnyx's NyxReturnValue, as AFL++'s forkserver.h declares it */
	cr_assert_eq(NYX_NORMAL, 0);
	cr_assert_eq(NYX_CRASH, 1);
	cr_assert_eq(NYX_ASAN, 2);
	cr_assert_eq(NYX_TIMEOUT, 3);
	cr_assert_eq(NYX_INVALID_WRITE_TO_PAYLOAD, 4);
	cr_assert_eq(NYX_ERROR, 5);
	cr_assert_eq(NYX_IO_ERROR, 6);
	cr_assert_eq(NYX_ABORT, 7);
	cr_assert_eq(NYX_STANDALONE, 0);
	cr_assert_eq(NYX_PARENT, 1);
	cr_assert_eq(NYX_CHILD, 2);
}

Test(nyx, missing_share_directory)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/no-such-share", rw_test_tmpdir("missing"));
	new_dir_says(dir, dir, "No such file or directory");
	free(new_dir_fails(NULL));
	/* the other ways in say the same */
	capture_begin();
	cr_assert_null(nyx.new_parent(dir, "/w", 0, 4096, true));
	cr_assert_null(nyx.new_child(dir, "/w", 0, 1));
	cr_assert_null(nyx.cfg_load(dir));
	char *said = capture_end();
	expect_said(said, dir);
	free(said);
}

Test(nyx, share_directory_that_is_a_file)
{
	const char *d = rw_test_tmpdir("file");
	char path[4096];

	put_str(d, "plain", "x");
	snprintf(path, sizeof(path), "%s/plain", d);
	new_dir_says(path, path, "not a directory");
}

Test(nyx, missing_config)
{
	const char *d = rw_test_tmpdir("noconfig");
	char file[4096];

	put_str(d, "config.ron", "()\n");
	snprintf(file, sizeof(file), "%s/rewind.json", d);
	new_dir_says(d, file, "not a rewind share directory");
}

/* A damaged rewind.json in d: nyx_new refuses, naming the file and the fault. */
static void damaged(const char *d, const char *json, const char *what)
{
	char file[4096];

	put_str(d, "rewind.json", json);
	snprintf(file, sizeof(file), "%s/rewind.json", d);
	new_dir_says(d, file, what);
	capture_begin();
	cr_assert_null(nyx.cfg_load(d));
	char *said = capture_end();
	expect_said(said, file);
	free(said);
}

Test(nyx, damaged_config)
{
	const char *d = share("fuzzme", NULL);

	damaged(d, "{\"rewind_share\": 1, \"kernel\": ", "line");
	damaged(d, "", "damaged");
	damaged(d, "[1, 2]", "not a JSON object");
	damaged(d, "{\"kernel\": \"guest.elf\"}", "\"rewind_share\"");
	damaged(d, "{\"rewind_share\": 2, \"kernel\": \"guest.elf\"}", "\"rewind_share\" must be 1");
	damaged(d, "{\"rewind_share\": 1}", "no guest image");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"mem\": 5}", "unknown key \"mem\"");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"mem_size\": \"big\"}",
		"\"mem_size\"");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"mem_size\": 12345}",
		"multiple of 2 MiB");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"payload_size\": 0}",
		"\"payload_size\"");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"timeout_ms\": -1}",
		"\"timeout_ms\"");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"coverage\": 1}", "\"coverage\"");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"../guest.elf\"}", "without '/'");
	damaged(d, "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"kernel\": \"x\"}", "duplicate");
}

Test(nyx, missing_or_bad_image)
{
	const char *d = share("fuzzme", NULL);
	char img[4096];

	snprintf(img, sizeof(img), "%s/guest.elf", d);
	cr_assert_eq(unlink(img), 0);
	new_dir_says(d, img, "No such file or directory");

	put_str(d, "guest.elf", "#!/bin/sh\necho not a guest\n");
	new_dir_says(d, img, "not a guest image");
}

Test(nyx, configuration_objects)
{
	const char *d = share("fuzzme", NULL);
	void *c = nyx.cfg_load(d);

	cr_assert_not_null(c);
	nyx.cfg_workdir(c, "/nonexistent/workdir");
	nyx.cfg_input_size(c, 4096);
	nyx.cfg_wp(c, true);
	nyx.cfg_role(c, NYX_STANDALONE);
	cr_assert(nyx.cfg_aux_size(c, 8192));
	cr_assert_not(nyx.cfg_aux_size(c, 100), "an aux buffer must be whole pages");
	uint64_t h = nyx.hash(c);
	cr_assert_neq(h, 0);
	cr_assert_eq(nyx.hash(c), h, "the target hash is stable");

	/* the hash follows the settings */
	void *c2 = nyx.cfg_load(d);
	cr_assert_not_null(c2);
	cr_assert_neq(c2, c);
	cr_assert_eq(nyx.hash(c2), h);
	put_str(d, "rewind.json", "{\"rewind_share\": 1, \"kernel\": \"guest.elf\", \"args\": \"x\"}");
	void *c3 = nyx.cfg_load(d);
	cr_assert_neq(nyx.hash(c3), h);
	nyx.cfg_free(c2);
	nyx.cfg_free(c3);

	/*
	 * nyx_new takes a configuration for what it is: the guest is started
	 * (no KVM here, or, where there is, a guest without coverage), and
	 * the message names the share directory, not a path made of the
	 * configuration's bytes.
	 */
	capture_begin();
	cr_assert_null(nyx.new_cfg(c, 0));
	char *said = capture_end();
	expect_said(said, d);
	cr_assert(strstr(said, "/dev/kvm") || strstr(said, "no coverage map"), "%s", said);
	free(said);

	/* a freed configuration is still known as one, and refused */
	nyx.cfg_free(c);
	capture_begin();
	cr_assert_null(nyx.new_cfg(c, 0));
	cr_assert_eq(nyx.hash(c), 0);
	nyx.cfg_input_size(c, 4096);
	said = capture_end();
	expect_said(said, "freed");
	free(said);
}

Test(nyx, a_failed_config_load_does_not_crash_the_next_calls)
{
	/* later AFL++ does not check nyx_config_load's result */
	capture_begin();
	void *c = nyx.cfg_load("/nonexistent/share");
	cr_assert_null(c);
	nyx.cfg_workdir(c, "/w");
	nyx.cfg_input_size(c, 1 << 20);
	nyx.cfg_wp(c, true);
	nyx.cfg_hprintf(c, 2);
	nyx.cfg_role(c, NYX_CHILD);
	nyx.cfg_reuse(c, "/s");
	cr_assert_not(nyx.cfg_aux_size(c, 4096));
	cr_assert_eq(nyx.hash(c), 0);
	cr_assert_null(nyx.new_cfg(c, 0));
	nyx.cfg_free(c);
	free(capture_end());
}

Test(nyx, calls_without_a_runner)
{
	uint8_t buf[16] = "x";

	capture_begin();
	nyx.shutdown(NULL);
	nyx.set_reload(NULL, true);
	nyx.set_timeout(NULL, 1, 0);
	nyx.apply(NULL);
	nyx.set_input(NULL, buf, 1);
	cr_assert_eq(nyx.exec(NULL), NYX_ERROR);
	cr_assert_null(nyx.bitmap(NULL));
	cr_assert_eq(nyx.bitmap_size(NULL), 0);
	cr_assert_eq(nyx.aux(NULL, buf, sizeof(buf)), 0);
	cr_assert_null(nyx.input_buffer(NULL));
	free(capture_end());
}

Test(nyx, remove_work_dir)
{
	const char *d = rw_test_tmpdir("workdir");
	char w[4096];

	snprintf(w, sizeof(w), "%s/workdir", d);
	cr_assert_eq(mkdir(w, 0700), 0);
	cr_assert(nyx.rm_workdir(w));
	cr_assert_neq(access(w, F_OK), 0);
	/* not empty: not rewind's, kept */
	cr_assert_eq(mkdir(w, 0700), 0);
	put_str(w, "keep", "x");
	capture_begin();
	cr_assert_not(nyx.rm_workdir(w));
	cr_assert_not(nyx.rm_workdir(NULL));
	free(capture_end());
	cr_assert_eq(access(w, F_OK), 0);
}

/* ---------------------------------------------------------- the CLI */

static struct cli_result cli(const char *const *argv)
{
	struct cli_result r;

	cr_assert_eq(cli_run(argv, NULL, 60, 0, &r), 0);
	return r;
}

Test(fuzz_share, makes_a_share_directory)
{
	char dir[4096], path[4200];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/share", rw_test_tmpdir("cli"));
	const char *argv[] = { "rewind", "fuzz-share", dir, "--kernel", rw_test_guest("fuzzme"),
			       "--mem", "32M", "--payload-size", "4K", "--timeout", "250",
			       "--args", "x=1", NULL };
	struct cli_result r = cli(argv);

	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_not_null(strstr(r.out, "share directory"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "afl-fuzz -X -i IN -o OUT -- "), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "/nyx afl-fuzz"), "names libnyx.so's directory: %s", r.out);
	cli_result_free(&r);

	snprintf(path, sizeof(path), "%s/fuzzme.elf", dir);
	cr_assert_eq(stat(path, &st), 0, "the image is copied in");
	snprintf(path, sizeof(path), "%s/config.ron", dir);
	cr_assert_eq(stat(path, &st), 0, "afl-fuzz looks for config.ron");
	cr_assert(S_ISREG(st.st_mode));
	snprintf(path, sizeof(path), "%s/rewind.json", dir);
	json_error_t e;
	json_t *o = json_load_file(path, 0, &e);
	cr_assert_not_null(o, "%s: %s", path, e.text);
	cr_assert_eq(json_integer_value(json_object_get(o, "rewind_share")), 1);
	cr_assert_str_eq(json_string_value(json_object_get(o, "kernel")), "fuzzme.elf");
	cr_assert_eq(json_integer_value(json_object_get(o, "mem_size")), 32 << 20);
	cr_assert_eq(json_integer_value(json_object_get(o, "payload_size")), 4096);
	cr_assert_eq(json_integer_value(json_object_get(o, "timeout_ms")), 250);
	cr_assert_str_eq(json_string_value(json_object_get(o, "args")), "x=1");
	cr_assert(json_is_true(json_object_get(o, "coverage")));
	json_decref(o);

	/* libnyx.so reads what fuzz-share wrote */
	void *c = nyx.cfg_load(dir);
	cr_assert_not_null(c);
	nyx.cfg_free(c);

	/* made again, with --json: the same directory is updated in place */
	const char *again[] = { "rewind", "fuzz-share", dir, "--kernel", rw_test_guest("hang"),
				"--timeout", "2s", "--no-coverage", "--json", NULL };
	r = cli(again);
	cr_assert_eq(r.status, 0, "%s", r.err);
	o = json_loads(r.out, 0, &e);
	cr_assert_not_null(o, "not JSON: %s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(o, "share_dir")), dir);
	json_t *cfg = json_object_get(o, "config");
	cr_assert_str_eq(json_string_value(json_object_get(cfg, "kernel")), "hang.elf");
	cr_assert_eq(json_integer_value(json_object_get(cfg, "timeout_ms")), 2000);
	cr_assert_eq(json_integer_value(json_object_get(cfg, "mem_size")), 64 << 20);
	cr_assert(json_is_false(json_object_get(cfg, "coverage")));
	cr_assert(json_is_string(json_object_get(o, "libnyx_dir")));
	json_decref(o);
	cli_result_free(&r);
}

/* rewind argv... exits with status, saying what on stderr. */
static void cli_fails(int status, const char *what, const char *const *argv)
{
	struct cli_result r = cli(argv);

	cr_assert_eq(r.status, status, "%s %s: status %d, stderr: %s", argv[1], argv[2] ? argv[2] : "",
		     r.status, r.err);
	cr_assert_not_null(strstr(r.err, what), "expected \"%s\" in: %s", what, r.err);
	cr_assert_eq(cli_count_lines(r.err), 1, "one line: %s", r.err);
	cli_result_free(&r);
}

Test(fuzz_share, usage_errors)
{
	const char *d = rw_test_tmpdir("usage");
	const char *img = rw_test_guest("fuzzme");
	char dir[4096], notdir[4096];

	snprintf(dir, sizeof(dir), "%s/share", d);
	snprintf(notdir, sizeof(notdir), "%s/no/such/parent", d);
	cli_fails(2, "DIR is needed", (const char *[]){ "rewind", "fuzz-share", NULL });
	cli_fails(2, "--kernel FILE is needed", (const char *[]){ "rewind", "fuzz-share", dir, NULL });
	cli_fails(2, "No such file", (const char *[]){ "rewind", "fuzz-share", dir, "--kernel",
						       "/nonexistent.elf", NULL });
	cli_fails(2, "not a guest image", (const char *[]){ "rewind", "fuzz-share", dir, "--kernel",
							    "/etc/passwd", NULL });
	cli_fails(2, "--mem", (const char *[]){ "rewind", "fuzz-share", dir, "--kernel", img, "--mem",
						"3M", NULL });
	cli_fails(2, "--payload-size", (const char *[]){ "rewind", "fuzz-share", dir, "--kernel", img,
							 "--payload-size", "17M", NULL });
	cli_fails(2, "--timeout", (const char *[]){ "rewind", "fuzz-share", dir, "--kernel", img,
						    "--timeout", "soon", NULL });
	cli_fails(2, "unknown option", (const char *[]){ "rewind", "fuzz-share", dir, "--kernel", img,
							 "--bogus", NULL });
	cli_fails(2, "needs a value", (const char *[]){ "rewind", "fuzz-share", dir, "--kernel", NULL });
	cli_fails(2, "unexpected argument", (const char *[]){ "rewind", "fuzz-share", dir, "extra",
							      "--kernel", img, NULL });
	cli_fails(2, "does not exist", (const char *[]){ "rewind", "fuzz-share", notdir, "--kernel",
							 img, NULL });
	cli_fails(2, "not a directory", (const char *[]){ "rewind", "fuzz-share", img, "--kernel", img,
							  NULL });
	cr_assert_neq(access(dir, F_OK), 0, "nothing is made on a usage error");
}

Test(fuzz_replay, usage_errors)
{
	const char *d = share("fuzzme", NULL);
	const char *t = rw_test_tmpdir("replay");
	char in[4096], missing[4096], file[4096];

	snprintf(in, sizeof(in), "%s/input", t);
	snprintf(missing, sizeof(missing), "%s/none", t);
	put_str(t, "input", "AAAA");
	cli_fails(2, "DIR is needed", (const char *[]){ "rewind", "fuzz-replay", NULL });
	cli_fails(2, "FILE is needed", (const char *[]){ "rewind", "fuzz-replay", d, NULL });
	cli_fails(2, missing, (const char *[]){ "rewind", "fuzz-replay", d, missing, NULL });
	cli_fails(2, "unknown option", (const char *[]){ "rewind", "fuzz-replay", d, in, "--x", NULL });
	snprintf(file, sizeof(file), "%s/rewind.json", d);
	put_str(d, "rewind.json", "{ damaged");
	cli_fails(2, file, (const char *[]){ "rewind", "fuzz-replay", d, in, NULL });
	cli_fails(2, missing, (const char *[]){ "rewind", "fuzz-replay", missing, in, NULL });
}

/* ------------------------------------------------------------ with KVM */

/* A runner for guest, AFL++ 4.04c's way, with an input buffer of size. */
static void *runner(const char *dir, uint32_t size)
{
	capture_begin();
	void *r = nyx.new_dir(dir, "/nonexistent/workdir", 0, size, true);
	char *said = capture_end();

	cr_assert_not_null(r, "nyx_new %s: %s", dir, said);
	free(said);
	return r;
}

static enum NyxReturnValue run(void *r, const char *in, char *aux, size_t auxlen)
{
	enum NyxReturnValue v;

	nyx.set_input(r, (uint8_t *)in, (uint32_t)strlen(in));
	v = nyx.exec(r);
	uint32_t n = nyx.aux(r, (uint8_t *)aux, (uint32_t)auxlen - 1);
	aux[n] = 0;
	return v;
}

Test(nyx_kvm, a_guest_without_coverage_is_refused, .timeout = 120)
{
	rw_test_require_kvm();
	const char *d = share("fuzzme", NULL);
	new_dir_says(d, d, "no coverage map");
}

Test(nyx_kvm, normal_crash_and_fault, .timeout = 120)
{
	char aux[4096];

	rw_test_require_kvm();
	void *r = runner(share("fuzzme", ", \"coverage\": false"), 4096);

	cr_assert_eq(nyx.bitmap_size(r), 64, "no coverage: an empty bitmap");
	for (unsigned i = 0; i < 3; i++) {
		/* the same status every time: the VM was reset in between */
		cr_assert_eq(run(r, "AAAA", aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
		cr_assert_str_eq(aux, "done: status 4");
		cr_assert_eq(run(r, "BUG!", aux, sizeof(aux)), NYX_CRASH, "%s", aux);
		cr_assert_not_null(strstr(aux, "crash: the target reported code 0xb06"), "%s", aux);
		cr_assert_eq(run(r, "NULL", aux, sizeof(aux)), NYX_CRASH, "%s", aux);
		cr_assert_not_null(strstr(aux, "crash: exception #PF (vector 14) at RIP 0x"), "%s", aux);
		cr_assert_not_null(strstr(aux, "CR2 0x0"), "%s", aux);
	}
	for (size_t i = 0; i < nyx.bitmap_size(r); i++)
		cr_assert_eq(nyx.bitmap(r)[i], 0);

	/* the input written straight into the input buffer */
	uint8_t *in = nyx.input_buffer(r);
	uint32_t four = 4;
	memcpy(in, &four, 4);
	memcpy(in + 4, "BUG!", 4);
	cr_assert_eq(nyx.exec(r), NYX_CRASH);
	nyx.shutdown(r);
}

Test(nyx_kvm, an_input_longer_than_the_buffer_is_an_error, .timeout = 120)
{
	static uint8_t big[5000];
	char aux[4096];

	rw_test_require_kvm();
	void *r = runner(share("fuzzme", ", \"coverage\": false"), 4096);

	memset(big, 'A', sizeof(big));
	capture_begin();
	nyx.set_input(r, big, sizeof(big));
	cr_assert_eq(nyx.exec(r), NYX_ERROR);
	char *said = capture_end();
	expect_said(said, "5000 bytes");
	expect_said(said, "4096 bytes");
	free(said);
	uint32_t n = nyx.aux(r, (uint8_t *)aux, sizeof(aux) - 1);
	aux[n] = 0;
	cr_assert_not_null(strstr(aux, "error: the input has 5000 bytes"), "%s", aux);
	/* the same through the input buffer's length */
	uint32_t len = 4097;
	memcpy(nyx.input_buffer(r), &len, 4);
	capture_begin();
	cr_assert_eq(nyx.exec(r), NYX_ERROR);
	free(capture_end());
	/* no buffer at all */
	capture_begin();
	nyx.set_input(r, NULL, 4);
	cr_assert_eq(nyx.exec(r), NYX_ERROR);
	said = capture_end();
	expect_said(said, "no buffer");
	free(said);
	/* nothing ran: the VM is fine */
	cr_assert_eq(run(r, "AAAA", aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
	cr_assert_eq(run(r, "AAAAAAAA", aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
	cr_assert_str_eq(aux, "done: status 8");
	nyx.shutdown(r);
}

Test(nyx_kvm, payload_size_cuts_what_the_guest_gets, .timeout = 120)
{
	char aux[4096];

	rw_test_require_kvm();
	void *r = runner(share("fuzzme", ", \"coverage\": false, \"payload_size\": 6"), 0);

	/* "AAAABUG!" reaches the guest as "AAAABU": no crash */
	cr_assert_eq(run(r, "AAAABUG!", aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
	cr_assert_str_eq(aux, "done: status 4");
	nyx.shutdown(r);
}

Test(nyx_kvm, timeouts_and_the_next_run, .timeout = 120)
{
	static const char *const hangs[] = { "u", "k", "h" };
	char aux[4096];

	rw_test_require_kvm();
	void *r = runner(share("hang", ", \"coverage\": false"), 4096);

	/* as afl-fuzz does: its timeout in ms, as seconds and microseconds */
	nyx.set_reload(r, true);
	nyx.set_timeout(r, 0, 50000);
	nyx.apply(r);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_eq(run(r, hangs[i], aux, sizeof(aux)), NYX_TIMEOUT, "'%s': %s", hangs[i], aux);
		cr_assert_eq(strncmp(aux, "timeout: ", 9), 0, "%s", aux);
		cr_assert_eq(run(r, "normal", aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
		cr_assert_str_eq(aux, "done: status 6");
	}
	nyx.shutdown(r);
	nyx.shutdown(r); /* afl-fuzz may shut down twice */
	capture_begin();
	cr_assert_eq(nyx.exec(r), NYX_ERROR);
	free(capture_end());
}

Test(nyx_kvm, the_configuration_interface, .timeout = 120)
{
	char aux[4096];

	rw_test_require_kvm();
	void *c = nyx.cfg_load(share("fuzzme", ", \"coverage\": false"));
	cr_assert_not_null(c);
	nyx.cfg_workdir(c, "/nonexistent/workdir");
	nyx.cfg_input_size(c, 4096);
	nyx.cfg_wp(c, true);
	nyx.cfg_role(c, NYX_STANDALONE);
	void *r = nyx.new_cfg(c, 0);
	cr_assert_not_null(r);
	nyx.cfg_free(c);
	cr_assert_eq(run(r, "BUG!", aux, sizeof(aux)), NYX_CRASH, "%s", aux);
	cr_assert_eq(run(r, "AAAA", aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
	nyx.shutdown(r);
}

/*
 * A guest built with coverage (the SDK's example tlv): the bitmap is zero
 * before the first run, the same input gives the same bitmap every time,
 * and what the fuzzer writes into its bitmap (afl-fuzz classifies counts
 * in place) does not reach the next run.
 */
Test(nyx_kvm, coverage_bitmap, .timeout = 120)
{
	char aux[4096];

	rw_test_require_kvm();
	cr_assert_eq(access(rw_test_guest("tlv"), R_OK), 0, "%s: the coverage example is missing",
		     rw_test_guest("tlv"));
	void *r = runner(share("tlv", NULL), 4096);
	size_t n = nyx.bitmap_size(r);
	uint8_t *bm = nyx.bitmap(r);

	cr_assert_gt(n, 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(bm[i], 0, "byte %zu of the bitmap before any run", i);
	static const char sample[] = "\x01\x01\x05\x02\x03" "abc";
	cr_assert_eq(run(r, sample, aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
	uint8_t *first = malloc(n);
	memcpy(first, bm, n);
	size_t edges = 0;
	for (size_t i = 0; i < n; i++)
		edges += first[i] != 0;
	cr_assert_gt(edges, 0, "a run leaves edges in the bitmap");
	memset(bm, 1, n); /* the fuzzer scribbles over its copy */
	cr_assert_eq(run(r, sample, aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
	cr_assert(memcmp(bm, first, n) == 0, "the same input, the same bitmap");
	cr_assert_eq(run(r, "\xff", aux, sizeof(aux)), NYX_NORMAL, "%s", aux);
	cr_assert(memcmp(bm, first, n) != 0, "another input, another path");
	free(first);
	nyx.shutdown(r);
}

Test(fuzz_replay, replays_inputs, .timeout = 120)
{
	rw_test_require_kvm();
	const char *d = share("fuzzme", ", \"coverage\": false");
	const char *t = rw_test_tmpdir("inputs");
	char ok[4096], bug[4096], null[4096];

	put_str(t, "ok", "AAAA");
	put_str(t, "bug", "BUG!");
	put_str(t, "null", "NULL");
	snprintf(ok, sizeof(ok), "%s/ok", t);
	snprintf(bug, sizeof(bug), "%s/bug", t);
	snprintf(null, sizeof(null), "%s/null", t);
	struct cli_result r = cli((const char *[]){ "rewind", "fuzz-replay", d, ok, null, bug, NULL });
	cr_assert_eq(r.status, 3, "the first crash decides: %d %s", r.status, r.err);
	cr_assert_eq(cli_count_lines(r.out), 3, "%s", r.out);
	cr_assert_not_null(strstr(r.out, ": done: status 4\n"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, ": crash: exception #PF (vector 14)"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, ": crash: the target reported code 0xb06"), "%s", r.out);
	cli_result_free(&r);

	r = cli((const char *[]){ "rewind", "fuzz-replay", d, ok, "--json", NULL });
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_error_t e;
	json_t *o = json_loads(r.out, 0, &e);
	cr_assert_not_null(o, "%s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(o, "outcome")), "normal");
	cr_assert_eq(json_integer_value(json_object_get(o, "status")), 4);
	json_decref(o);
	cli_result_free(&r);
}
