/*
 * gen_corpus.c - writes the fuzzers' seed corpus (tests/fuzz/corpus/<name>/)
 * with the project's own encoders: the record writer, the state codecs, the
 * devices' save ops, jansson as `rewind ctl` uses it, the store's record
 * and node encoders, and store_export(). A few edge cases are made by hand
 * from those outputs (an extra tagged field, a critical one).
 *
 *   gen_corpus DIR     (DIR is usually <source>/tests/fuzz/corpus)
 *
 * Files are named after what they hold and overwritten; nothing else in
 * DIR is touched. The export seeds carry their commit time, so they change
 * each time they are made; everything else comes out the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "board.h"
#include "bus.h"
#include "fuzz_common.h"
#include "record.h"
#include "rw/abi.h"
#include "serial.h"
#include "state.h"
#include "store.h"
#include "store_internal.h"
#include "util.h"
#include "vcpu_state.h"
#include "virtio_blk.h"
#include "virtio_mmio.h"
#include "vm.h"

static const char *out_dir;

static __attribute__((noreturn)) void die(const char *what, int err)
{
	fprintf(stderr, "gen_corpus: %s: %s\n", what, rw_strerror(err));
	exit(1);
}

static void put_file(const char *corpus, const char *name, const void *data, size_t len)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", out_dir, corpus);
	if (mkdir(path, 0755) && errno != EEXIST)
		die(path, -errno);
	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, corpus, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || rw_write_all(fd, data, len) || close(fd))
		die(path, -errno);
	printf("%s/%s: %zu bytes\n", corpus, name, len);
}

/* The record rec with one tagged field added at the end of its payload. */
static void put_with_tag(const char *corpus, const char *name, const uint8_t *rec, size_t len,
			 uint16_t tag, const void *value, size_t vlen)
{
	struct rec_header h;
	struct rec_writer w;
	uint8_t *out;
	size_t n;
	int ret;

	if (rec_peek(rec, len, &h))
		die(name, RW_ECORRUPT);
	rec_writer_init(&w, "", h.version);
	w.kind = h.kind;
	rec_put_bytes(&w, rec + REC_HEADER_SIZE, len - REC_HEADER_SIZE);
	rec_put_tagged(&w, tag, value, vlen);
	ret = rec_take(&w, &out, &n);
	if (ret)
		die(name, ret);
	rec_writer_free(&w);
	put_file(corpus, name, out, n);
	free(out);
}

/* ------------------------------------------------------------ base records */

static void gen_record(void)
{
	static const uint8_t blob[] = { 1, 2, 3, 4, 5 };
	struct rec_writer w;
	uint8_t *out;
	size_t n;

	/* the harness's own reading: tag & 7 is the scalar type, (tag >> 3) & 63 a cap */
	rec_writer_init(&w, "fuzz", 2);
	rec_put_u64(&w, 0x0123456789abcdefULL);
	rec_put_u64(&w, 42);
	rec_tag_begin(&w, 0x0000 | (0 << 3));
	rec_put_u8(&w, 7);
	rec_put_u8(&w, 8);
	rec_tag_end(&w);
	rec_tag_begin(&w, 0x0001);
	rec_put_u16(&w, 0xbeef);
	rec_tag_end(&w);
	rec_tag_begin(&w, 0x0002);
	rec_put_u32(&w, 0xdeadbeef);
	rec_tag_end(&w);
	rec_tag_begin(&w, 0x4000);
	rec_tag_begin(&w, 0x0003);
	rec_put_u64(&w, 1);
	rec_tag_end(&w);
	rec_tag_begin(&w, 0x0004);
	rec_put_bool(&w, true);
	rec_put_bool(&w, false);
	rec_tag_end(&w);
	rec_tag_end(&w);
	rec_tag_begin(&w, 0x0005 | (16 << 3));
	rec_put_blob(&w, blob, sizeof(blob));
	rec_tag_end(&w);
	rec_tag_begin(&w, 0x0006 | (16 << 3));
	rec_put_str(&w, "rewind");
	rec_tag_end(&w);
	rec_tag_begin(&w, 0x0007 | (4 << 3));
	rec_put_bytes(&w, "abcd", 4);
	rec_tag_end(&w);
	rec_put_tagged(&w, 0x2042, "skipped", 7);
	if (rec_take(&w, &out, &n))
		die("record", rec_writer_error(&w));
	rec_writer_free(&w);
	put_file("record", "tags", out, n);
	free(out);

	rec_writer_init(&w, "empty", 0);
	if (rec_take(&w, &out, &n))
		die("record", rec_writer_error(&w));
	rec_writer_free(&w);
	put_file("record", "empty", out, n);
	put_with_tag("record", "critical-tag", out, n, 0xa001, "", 0);
	free(out);
}

/* --------------------------------------------------------- state records */

static struct kvm_segment segment(uint64_t base, uint32_t limit, uint16_t sel, uint8_t type,
				  uint8_t code_or_data, uint8_t l, uint8_t db, uint8_t g)
{
	return (struct kvm_segment){ .base = base, .limit = limit, .selector = sel, .type = type,
				     .present = 1, .s = code_or_data, .l = l, .db = db, .g = g };
}

/*
 * What the states below share: the segments (cs; ds, also es, fs, gs and
 * ss; tr; the LDT), one XCR, the debug registers' reset values, the local
 * APIC's ID and version, the x87 and SSE control words.
 */
static void vcpu_base(const struct vm *vm, unsigned index, struct vcpu_state *st,
		      struct kvm_segment cs, struct kvm_segment ds, struct kvm_segment tr)
{
	struct kvm_sregs2 *s = &st->sregs;

	memset(st, 0, sizeof(*st));
	s->cs = cs;
	s->ds = s->es = s->fs = s->gs = s->ss = ds;
	s->tr = tr;
	s->ldt = segment(0, 0xffff, 0, 2, 0, 0, 0, 0);
	st->xcrs.nr_xcrs = 1;
	st->dregs.dr6 = 0xffff0ff0;
	st->dregs.dr7 = 0x400;
	put_le32((uint8_t *)st->lapic.regs + 0x20, index << 24);
	put_le32((uint8_t *)st->lapic.regs + 0x30, 0x50014);
	st->xsave_size = vm->xsave_size;
	put_le16(st->xsave, 0x37f);          /* FCW */
	put_le32(st->xsave + 24, 0x1f80);    /* MXCSR */
}

/* The state of a vCPU in 64-bit mode, as an SDK guest runs (the BSP if index 0). */
static void vcpu_long_mode(const struct vm *vm, unsigned index, struct vcpu_state *st)
{
	struct kvm_sregs2 *s = &st->sregs;

	vcpu_base(vm, index, st, segment(0, 0xffffffff, 0x08, 11, 1, 1, 0, 1),
		  segment(0, 0xffffffff, 0x10, 3, 1, 0, 1, 1),
		  segment(0x5000, 0x67, 0x28, 11, 0, 0, 0, 0));
	st->mp.mp_state = KVM_MP_STATE_RUNNABLE;
	st->regs.rip = 0x401000;
	st->regs.rsp = 0x7ff000;
	st->regs.rdi = 1;
	st->regs.rflags = 0x202;
	s->fs.base = 0x600000;
	s->ldt.unusable = 1;
	s->ldt.present = 0;
	s->gdt = (struct kvm_dtable){ .base = 0x4000, .limit = 0x37 };
	s->idt = (struct kvm_dtable){ .base = 0x6000, .limit = 0xfff };
	s->cr0 = 0x80050033; /* PE MP ET NE WP AM PG */
	s->cr3 = 0x10000;
	s->cr4 = 0x40620;    /* PAE OSFXSR OSXMMEXCPT OSXSAVE */
	s->efer = 0xd01;     /* SCE LME LMA NXE */
	s->apic_base = RW_GPA_LAPIC | 0x800 | (index == 0 ? 0x100 : 0);
	st->xcrs.xcrs[0].value = 7; /* x87 SSE AVX */
	put_le32((uint8_t *)st->lapic.regs + 0xf0, 0x1ff);
	put_le32((uint8_t *)st->lapic.regs + 0x320, 0x10000);
	st->events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
			   KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	st->nr_msrs = vm->nr_msrs;
	for (uint32_t i = 0; i < vm->nr_msrs; i++) {
		st->msrs[i].index = vm->msr_index[i];
		st->msrs[i].data = i == 0 ? 123456789ull : 0x1000ull * i;
	}
	put_le32(st->xsave + 28, 0xffff);    /* MXCSR_MASK */
	put_le64(st->xsave + 512, 7);        /* XSTATE_BV */
}

/* An application processor waiting for its start-up IPI, in real mode. */
static void vcpu_waiting(const struct vm *vm, unsigned index, struct vcpu_state *st)
{
	struct kvm_sregs2 *s = &st->sregs;

	vcpu_base(vm, index, st, segment(0xffff0000, 0xffff, 0xf000, 11, 1, 0, 0, 0),
		  segment(0, 0xffff, 0, 3, 1, 0, 0, 0),
		  segment(0, 0xffff, 0, 11, 0, 0, 0, 0));
	st->mp.mp_state = KVM_MP_STATE_INIT_RECEIVED;
	st->regs.rip = 0xfff0;
	st->regs.rflags = 0x2;
	s->gdt.limit = 0xffff;
	s->idt.limit = 0xffff;
	s->cr0 = 0x60000010; /* CD NW ET */
	s->apic_base = RW_GPA_LAPIC | 0x800;
	st->xcrs.xcrs[0].value = 1;
	put_le32((uint8_t *)st->lapic.regs + 0xf0, 0xff);
	st->events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	st->nr_msrs = 3;
	st->msrs[0] = (struct kvm_msr_entry){ .index = 0x10, .data = 5 };
	st->msrs[1] = (struct kvm_msr_entry){ .index = 0x277, .data = 0x0007040600070406ull };
	st->msrs[2] = (struct kvm_msr_entry){ .index = 0x6e0, .data = 0 };
}

/* vCPU index's state st checked and encoded, in *buf (free() it); exits if it cannot. */
static void vcpu_record(const struct vm *vm, unsigned index, const struct vcpu_state *st,
			uint8_t **buf, size_t *len)
{
	char why[512];
	int ret;

	if ((ret = state_vcpu_check(vm, index, st, why, sizeof(why))))
		die(why, ret);
	if ((ret = state_vcpu_encode(vm, index, st, buf, len))) {
		snprintf(why, sizeof(why), "vcpu/%u", index);
		die(why, ret);
	}
}

static void gen_vcpu(void)
{
	struct vm vm;
	struct vcpu_state *st = calloc(1, sizeof(*st));
	uint8_t *buf;
	size_t len;

	if (!st)
		die("vcpu", -ENOMEM);
	fuzz_vm_init(&vm, 2, 3 * (1ULL << 30) + (64ULL << 20), false);

	vcpu_long_mode(&vm, 0, st);
	vcpu_record(&vm, 0, st, &buf, &len);
	put_file("vcpu", "bsp-long-mode", buf, len);
	put_file("record", "vcpu", buf, len);
	put_with_tag("vcpu", "bsp-extra-tag", buf, len, 0x0042, "abc", 3);
	put_with_tag("vcpu", "bsp-critical-tag", buf, len, 0x8042, "", 0);
	free(buf);

	vcpu_waiting(&vm, 1, st);
	vcpu_record(&vm, 1, st, &buf, &len);
	put_file("vcpu", "ap-waiting", buf, len);
	free(buf);
	free(st);
}

static void gen_platform(void)
{
	struct platform_state st;
	struct kvm_pic_state *m = &st.pic_master.chip.pic, *sl = &st.pic_slave.chip.pic;
	struct kvm_ioapic_state *io = &st.ioapic.chip.ioapic;
	struct vm vm;
	char why[512];
	uint8_t *buf;
	size_t len;
	int ret;

	fuzz_vm_init(&vm, 1, 64ULL << 20, false);
	memset(&st, 0, sizeof(st));
	st.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	m->elcr_mask = 0xf8;
	sl->elcr_mask = 0xde;
	io->base_address = RW_GPA_IOAPIC;
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		io->redirtbl[i].bits = 1ull << 16; /* masked */
	for (unsigned i = 0; i < 3; i++)
		st.pit.channels[i].mode = 0xff;
	st.pit.channels[0].gate = 1;
	st.clock.clock = 1000000;
	st.clock.flags = KVM_CLOCK_TSC_STABLE;
	if ((ret = state_platform_check(&vm, &st, why, sizeof(why))))
		die(why, ret);
	if ((ret = state_platform_encode(&vm, &st, &buf, &len)))
		die("platform", ret);
	put_file("platform", "reset", buf, len);
	free(buf);

	/* what a guest that set up its PICs and the PIT leaves */
	m->irq_base = 0x20;
	m->imr = 0xfb;
	m->init4 = 1;
	m->elcr = 0x08;
	m->isr = 0x01;
	m->priority_add = 1;
	sl->irq_base = 0x28;
	sl->imr = 0xff;
	sl->init4 = 1;
	io->id = 1;
	io->irr = 1u << 4;
	io->redirtbl[4].bits = 0x24;
	st.pit.channels[0] = (struct kvm_pit_channel_state){ .count = 0x10000, .rw_mode = 3,
							     .mode = 2, .gate = 1,
							     .read_state = 3, .write_state = 3,
							     .count_load_time = 987654321 };
	st.pit.flags = KVM_PIT_FLAGS_HPET_LEGACY;
	st.clock.flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
	st.clock.realtime = 1700000000000000000ull;
	st.clock.host_tsc = 5000000000ull;
	if ((ret = state_platform_check(&vm, &st, why, sizeof(why))))
		die(why, ret);
	if ((ret = state_platform_encode(&vm, &st, &buf, &len)))
		die("platform", ret);
	put_file("platform", "programmed", buf, len);
	put_file("record", "platform", buf, len);
	put_with_tag("platform", "extra-tag", buf, len, 0x0001, "\x01\x02", 2);
	free(buf);
}

static void gen_config(void)
{
	struct vm_config cfg;
	uint8_t *buf;
	size_t len;
	int ret;

	config_init(&cfg);
	snprintf(cfg.kernel, sizeof(cfg.kernel), "build/guest/hello.elf");
	if ((ret = state_config_encode(&cfg, &buf, &len)))
		die("config", ret);
	put_file("config", "defaults", buf, len);
	put_with_tag("config", "ext-tag", buf, len, 0x0200, "\x05\0\0\0", 4);
	put_with_tag("config", "critical-tag", buf, len, 0x8123, "", 0);
	free(buf);

	cfg.mem_size = 4ull << 30;
	cfg.ncpus = 4;
	cfg.entry = VM_ENTRY_USER;
	snprintf(cfg.args, sizeof(cfg.args), "--count 3 --label x");
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/tmp/console.log");
	cfg.serial_in = false;
	cfg.ndisks = 2;
	snprintf(cfg.disks[0].path, sizeof(cfg.disks[0].path), "/var/lib/rewind/root.img");
	snprintf(cfg.disks[0].id, sizeof(cfg.disks[0].id), "root");
	cfg.disks[0].ro = true;
	snprintf(cfg.disks[1].path, sizeof(cfg.disks[1].path), "data.img");
	cfg.disks[1].engine = DISK_ENGINE_SYNC;
	if ((ret = state_config_encode(&cfg, &buf, &len)))
		die("config", ret);
	put_file("config", "disks", buf, len);
	put_file("record", "config", buf, len);
	free(buf);
}

/* --------------------------------------------------------------- devices */

struct saved {
	const char *tag;
};

static int put_device(void *arg, const char *key, uint32_t version, const void *data,
		      size_t len)
{
	const struct saved *s = arg;
	char name[128];
	const char *type = strchr(key, '/') + 1;

	snprintf(name, sizeof(name), "%.*s-%s", (int)(strchr(type, '/') - type), type, s->tag);
	put_file("devices", name, data, len);
	return 0;
}

static void mmio_write(struct vm *vm, uint32_t reg, uint32_t v)
{
	if (!bus_dispatch(&vm->buses[BUS_MMIO], NULL, RW_GPA_VIRTIO_BASE + reg, &v, 4, true))
		die("virtio-mmio register write", -EIO);
}

static void gen_devices(void)
{
	static struct vm vm; /* its devices live until the end */
	struct saved s = { "reset" };
	struct device *blk;
	struct serial *uart;
	uint8_t block[4096];
	int ret;

	fuzz_board_init(&vm);
	if ((ret = state_devices_save(&vm, put_device, &s)))
		die("devices", ret);

	/* the UART with input waiting, the disk with a ready queue and blocks held */
	uart = board_serial(&vm);
	blk = vm_find_device(&vm, VIRTIO_BLK_TYPE_NAME, "data");
	if (!uart || !blk)
		die("devices", RW_ENOTFOUND);
	if (serial_feed(uart, "hi\n", 3) != 3)
		die("serial_feed", -EIO);
	mmio_write(&vm, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mmio_write(&vm, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_write(&vm, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	mmio_write(&vm, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
						    VIRTIO_STATUS_FEATURES_OK);
	mmio_write(&vm, VIRTIO_MMIO_QUEUE_SEL, 0);
	mmio_write(&vm, VIRTIO_MMIO_QUEUE_NUM, 16);
	mmio_write(&vm, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x100000);
	mmio_write(&vm, VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x101000);
	mmio_write(&vm, VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0x102000);
	mmio_write(&vm, VIRTIO_MMIO_QUEUE_READY, 1);
	mmio_write(&vm, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
						    VIRTIO_STATUS_FEATURES_OK |
						    VIRTIO_STATUS_DRIVER_OK);
	memset(block, 0x5a, sizeof(block));
	for (uint64_t b = 2; b < 6; b++)
		if (b != 4 && (ret = blk->type->content->restore(blk, b, block)))
			die("disk block", ret);
	s.tag = "running";
	if ((ret = state_devices_save(&vm, put_device, &s)))
		die("devices", ret);
}

/* --------------------------------------------------------------- control */

static void put_json(const char *name, json_t *o, const char *suffix)
{
	char *s = json_dumps(o, JSON_COMPACT);
	char line[512];

	if (!s)
		die("json_dumps", -ENOMEM);
	snprintf(line, sizeof(line), "%s%s", s, suffix);
	put_file("control", name, line, strlen(line));
	free(s);
	json_decref(o);
}

static void gen_control(void)
{
	static const char *const plain[] = { "pause", "resume", "status", "quit" };
	static const char *const edges[][2] = {
		{ "not-json", "{\"cmd\":" },
		{ "array", "[\"status\"]" },
		{ "unknown-cmd", "{\"cmd\":\"reboot\"}" },
		{ "unknown-field", "{\"cmd\":\"pause\",\"now\":true}" },
		{ "duplicate", "{\"cmd\":\"status\",\"cmd\":\"quit\"}" },
		{ "id-zero", "{\"cmd\":\"rollback\",\"id\":0}" },
		{ "id-real", "{\"cmd\":\"rollback\",\"id\":1.5}" },
		{ "label-nul", "{\"cmd\":\"checkpoint\",\"label\":\"a\\u0000b\"}" },
		{ "label-null", "{\"cmd\":\"checkpoint\",\"label\":null}" },
		{ "utf8", "{\"cmd\":\"\xc3\xa9t\xc3\xa9\"}" },
	};
	json_t *o;
	char label[200];

	for (size_t i = 0; i < ARRAY_SIZE(plain); i++)
		put_json(plain[i], json_pack("{ss}", "cmd", plain[i]), "");
	put_json("checkpoint", json_pack("{ss}", "cmd", "checkpoint"), "");
	put_json("checkpoint-label", json_pack("{ssss}", "cmd", "checkpoint", "label", "before"),
		 "");
	put_json("rollback", json_pack("{sssI}", "cmd", "rollback", "id", (json_int_t)3), "");
	put_json("status-crlf", json_pack("{ss}", "cmd", "status"), "\r");
	memset(label, 'x', 128);
	label[128] = 0;
	o = json_pack("{ssss}", "cmd", "checkpoint", "label", label);
	put_json("label-too-long", o, "");
	/* the refusal quotes 64 bytes of the name, which here ends inside a character */
	snprintf(label, sizeof(label), "a");
	for (int i = 0; i < 40; i++)
		strcat(label, "\xc3\xa9");
	put_json("unknown-cmd-cut-utf8", json_pack("{ss}", "cmd", label), "");
	for (size_t i = 0; i < ARRAY_SIZE(edges); i++)
		put_file("control", edges[i][0], edges[i][1], strlen(edges[i][1]));
}

/* ----------------------------------------------------------------- store */

static void gen_crec(void)
{
	struct map_rec maps[3] = { 0 };
	struct store_crec c = { 0 };
	struct byte_writer w = BYTE_WRITER_INIT;
	static const char config[] = "config blob";

	c.id = 1;
	c.time_ns = 1700000000000000000ull;
	c.nmaps = 1;
	c.maps = maps;
	maps[0].npages = 16384;
	maps[0].height = tree_height(maps[0].npages);
	if (crec_encode(&c, &w))
		die("crec", w.err);
	put_file("crec", "memory-only", w.buf, w.len);
	bw_free(&w);

	c.id = 7;
	c.parent = 6;
	c.label = "before-upgrade";
	c.config = (void *)config;
	c.config_len = sizeof(config) - 1;
	c.nmaps = 3;
	maps[0].present = 3;
	memset(maps[0].root.b, 0x11, 16);
	maps[1].name = "data";
	maps[1].npages = 300;
	maps[1].height = tree_height(300);
	maps[1].present = 50;
	memset(maps[1].root.b, 0x22, 16);
	maps[2].name = "scratch";
	maps[2].npages = 1;
	maps[2].height = 1;
	c.stats = (struct store_commit_stats){ 3, 1, 5, 4096 * 3, 1, 2, 123456 };
	if (crec_encode(&c, &w))
		die("crec", w.err);
	put_file("crec", "disks", w.buf, w.len);
	bw_free(&w);
}

static void gen_node(void)
{
	struct node n;
	uint8_t buf[NODE_MAX], head[HEAD_SIZE];
	size_t len;

	memset(&n, 0, sizeof(n));
	memset(n.e[0].b, 0xaa, 16);
	memset(n.e[3].b, 0xbb, 16);
	len = node_encode(&n, buf);
	put_file("node", "leaf", buf, len);
	memset(&n, 0, sizeof(n));
	n.level = 2;
	for (unsigned i = 0; i < STORE_FANOUT; i += 9)
		memset(n.e[i].b, (int)i + 1, 16);
	len = node_encode(&n, buf);
	put_file("node", "inner", buf, len);
	/* a chunk head as chunk.c lays it out: format, kind, codec, 0, length, refs, 16 bytes */
	memset(head, 0, sizeof(head));
	head[0] = HEAD_FORMAT;
	head[1] = CHUNK_PAGE;
	put_le32(head + 4, STORE_PAGE_SIZE);
	put_le64(head + 8, 2);
	memset(head + 16, 0x5a, 16);
	put_file("node", "head-page", head, sizeof(head));
}

/*
 * A damaged copy of an export file: in the checkpoint record (the first
 * frame, laid out as crec.c writes it), map `map` gets npages and present
 * (UINT64_MAX: unchanged); the record's and the frame's checksums are made
 * right again, so that only the tree's check can refuse it.
 */
static void export_variant(const uint8_t *file, size_t size, const char *name, size_t map,
			   uint64_t npages, uint64_t present)
{
	uint8_t *b = malloc(size);
	uint32_t len = get_le32(file + 32 + 4);
	uint8_t *p = b + 40;
	size_t at = 32;

	if (!b)
		die(name, -ENOMEM);
	memcpy(b, file, size);
	at += 4 + get_le32(p + at);             /* label */
	at += 4 + get_le32(p + at);             /* config */
	at += 4;                                /* nmaps */
	for (size_t i = 0; i < map; i++)
		at += 2 + get_le16(p + at) + 33;
	at += 2 + get_le16(p + at);
	if (npages != UINT64_MAX)
		put_le64(p + at, npages);
	if (present != UINT64_MAX)
		put_le64(p + at + 8, present);
	put_le64(p + len - 8, XXH3_64bits(p, len - 8));
	put_le64(p + len, XXH3_64bits(b + 32, 8 + (size_t)len));
	put_file("export", name, b, size);
	free(b);
}

static void export_one(struct store *s, uint64_t id, const char *name)
{
	char path[4200];
	uint8_t *buf;
	struct stat st;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/%s.rwx", fuzz_tmpdir("gen"), name);
	if ((ret = store_export(s, id, path, NULL, NULL, NULL)))
		die("store_export", ret);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		die(path, -errno);
	buf = malloc((size_t)st.st_size);
	if (!buf || rw_pread_all(fd, buf, (size_t)st.st_size, 0))
		die(path, -EIO);
	close(fd);
	put_file("export", name, buf, (size_t)st.st_size);
	put_file("crec", name, buf + 32 + 8, get_le32(buf + 32 + 4));
	if (strcmp(name, "page-and-disk") == 0) {
		/* the disk of 10 blocks holds block 3: say it has 2, or 2 present */
		export_variant(buf, (size_t)st.st_size, "bad-page-past-end", 1, 2, UINT64_MAX);
		export_variant(buf, (size_t)st.st_size, "bad-present-count", 1, UINT64_MAX, 2);
	}
	free(buf);
}

static void gen_export(void)
{
	struct store_open_opts o = { .flags = STORE_OPEN_CREATE | STORE_OPEN_NOSYNC,
				     .initial_map_size = 64ull << 20 };
	struct store *s;
	struct store_ckpt *c;
	uint8_t page[STORE_PAGE_SIZE];
	char dir[4200];
	uint64_t id;
	int ret;

	snprintf(dir, sizeof(dir), "%s/store", fuzz_tmpdir("gen"));
	if ((ret = store_open(dir, &o, &s)))
		die("store_open", ret);

	/* memory of holes only, a label, a config and two records: no chunk at all */
	if ((ret = store_ckpt_begin(s, 0, &c)) || (ret = store_ckpt_set_label(c, "holes")) ||
	    (ret = store_ckpt_set_config(c, "{\"mem\":\"16M\"}", 13)) ||
	    (ret = store_ckpt_set_size(c, NULL, 4096)) ||
	    (ret = store_ckpt_put_record(c, "vcpu/0", 1, "registers", 9)) ||
	    (ret = store_ckpt_put_record(c, "vm/empty", 1, "", 0)) ||
	    (ret = store_ckpt_commit(c, &id, NULL)))
		die("checkpoint", ret);
	export_one(s, id, "holes");

	/* one page in memory, the same page in a disk: one page chunk, shared */
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i % 251);
	if ((ret = store_ckpt_begin(s, 0, &c)) || (ret = store_ckpt_set_size(c, NULL, 5000)) ||
	    (ret = store_ckpt_add_range(c, NULL, 4100, page, 1)) ||
	    (ret = store_ckpt_set_size(c, "data", 10)) ||
	    (ret = store_ckpt_add_range(c, "data", 3, page, 1)) ||
	    (ret = store_ckpt_put_record(c, "dev/virtio-blk/data", 1, "rec", 3)) ||
	    (ret = store_ckpt_commit(c, &id, NULL)))
		die("checkpoint", ret);
	export_one(s, id, "page-and-disk");
	store_close(s);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	out_dir = argv[1];
	if (mkdir(out_dir, 0755) && errno != EEXIST)
		die(out_dir, -errno);
	gen_record();
	gen_vcpu();
	gen_platform();
	gen_config();
	gen_devices();
	gen_control();
	gen_crec();
	gen_node();
	gen_export();
	return 0;
}
