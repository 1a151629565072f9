/*
 * blkevil: a malicious virtio-blk driver, to test that the device survives
 * bad requests (used by the tests).
 *
 * args: "[kinds=all|K1,K2,...] [disk=I]" (defaults kinds=all disk=0)
 *
 * For each kind, in the order below, it builds one descriptor chain at
 * head 0 of queue 0 through the raw interface (rw_blk_vq), publishes it,
 * notifies, and waits (at most 1e8 spins) for a used entry or for
 * DEVICE_NEEDS_RESET in the Status register. It prints one line:
 *
 *     blkevil: <kind>: status <n>     a used entry came back; n is the
 *                                     status byte (255: not written)
 *     blkevil: <kind>: needs-reset    the device set DEVICE_NEEDS_RESET
 *                                     (also when it did so after using
 *                                     the chain)
 *     blkevil: <kind>: timeout        neither within 1e8 spins
 *     blkevil: <kind>: skipped        (rowrite on a writable disk)
 *
 * and after needs-reset or timeout resets and re-initialises the device.
 * Then a valid one-sector read shows the device still works:
 * "blkevil: done", exit 0 (with the argument "hold" it stays alive instead,
 * sleeping, so the host can be queried afterwards). Exit 1 if the re-initialisation or the final
 * read fails ("blkevil: reset failed <e>", "blkevil: final read failed <e>"),
 * 2 without a disk or for an unknown kind.
 *
 * Kinds (hdr = the 16-byte request header, data = 512 bytes, st = 1-byte
 * status, all device-writable as a read needs unless said otherwise):
 *   addr      hdr(IN) -> data at 0x7fff00000000 (outside RAM) -> st
 *   loop      hdr(IN) -> data -> back to hdr (desc 0 -> 1 -> 0 ...)
 *   chain     every descriptor of the queue in one chain, the last one
 *             pointing back to the first: longer than the queue
 *   huge      hdr(IN) -> data with len 0xffffffff -> st
 *   rowrite   hdr(OUT) -> data (device-readable) -> st on a read-only disk
 *   range     hdr(IN, sector capacity + 10) -> data -> st
 *   rostatus  hdr(IN) -> data -> st marked device-readable
 *   badnext   hdr(IN) with next = queue size + 5 (out of the table)
 *   shorthdr  hdr(IN) of 8 bytes -> data -> st
 */
#include <rw/rw.h>
#include <rw/virtio_blk.h>

#define SPIN_LIMIT 100000000ULL
#define EVIL_ADDR 0x7fff00000000ULL
#define RAW_HDR 2048 /* the handle's scratch page, raw part */
#define RAW_STATUS 2080

static const char *const all_kinds[] = {
	"addr", "loop", "chain", "huge", "rowrite", "range", "rostatus", "badnext", "shorthdr",
};
#define NKINDS (sizeof(all_kinds) / sizeof(all_kinds[0]))

struct evil {
	struct rw_blk d;
	uint8_t *data; /* one page */
	struct rw_virtio_blk_req_hdr *hdr;
	volatile uint8_t *status;
};

static void set_desc(struct rw_virtq_desc *t, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	t[i].addr = addr;
	t[i].len = len;
	t[i].flags = flags;
	t[i].next = next;
}

/* Header at desc 0 -> data at desc 1 -> status at desc 2, then the tweak. */
static void std_chain(struct evil *e, uint32_t type, uint64_t sector)
{
	struct rw_virtq_desc *t = rw_blk_vq(&e->d)->desc;

	e->hdr->type = type;
	e->hdr->reserved = 0;
	e->hdr->sector = sector;
	set_desc(t, 0, (uint64_t)e->hdr, sizeof(*e->hdr), RW_VIRTQ_DESC_F_NEXT, 1);
	set_desc(t, 1, (uint64_t)e->data, RW_BLK_SECTOR_SIZE,
		 RW_VIRTQ_DESC_F_NEXT |
			 (type == RW_VIRTIO_BLK_T_IN ? RW_VIRTQ_DESC_F_WRITE : 0),
		 2);
	set_desc(t, 2, (uint64_t)e->status, 1, RW_VIRTQ_DESC_F_WRITE, 0);
}

/* Builds the chain for kind; returns false to skip it. */
static bool build(struct evil *e, const char *kind)
{
	struct rw_vq_raw *q = rw_blk_vq(&e->d);
	struct rw_virtq_desc *t = q->desc;

	std_chain(e, RW_VIRTIO_BLK_T_IN, 0);
	if (!strcmp(kind, "addr")) {
		t[1].addr = EVIL_ADDR;
	} else if (!strcmp(kind, "loop")) {
		t[1].next = 0;
	} else if (!strcmp(kind, "chain")) {
		for (unsigned i = 1; i < q->size; i++)
			set_desc(t, i, (uint64_t)e->data, RW_BLK_SECTOR_SIZE,
				 RW_VIRTQ_DESC_F_NEXT | RW_VIRTQ_DESC_F_WRITE,
				 (uint16_t)((i + 1) % q->size));
	} else if (!strcmp(kind, "huge")) {
		t[1].len = 0xffffffffu;
	} else if (!strcmp(kind, "rowrite")) {
		if (!rw_blk_readonly(&e->d))
			return false;
		std_chain(e, RW_VIRTIO_BLK_T_OUT, 0);
	} else if (!strcmp(kind, "range")) {
		e->hdr->sector = rw_blk_capacity(&e->d) + 10;
	} else if (!strcmp(kind, "rostatus")) {
		t[2].flags = 0;
	} else if (!strcmp(kind, "badnext")) {
		t[0].next = (uint16_t)(q->size + 5);
	} else if (!strcmp(kind, "shorthdr")) {
		t[0].len = 8;
	}
	return true;
}

/* Runs one kind; returns 0, or 1 when the device could not be reset. */
static int run_kind(struct evil *e, const char *kind)
{
	struct rw_virtq_used_elem u;
	int ret;

	*e->status = 0xff;
	if (!build(e, kind)) {
		rw_printf("blkevil: %s: skipped\n", kind);
		return 0;
	}
	rw_blk_publish(&e->d, 0);
	rw_blk_notify(&e->d);
	ret = rw_blk_wait_used(&e->d, SPIN_LIMIT, &u);
	if (ret == 0 && (rw_blk_status(&e->d) & RW_VIRTIO_STATUS_NEEDS_RESET))
		ret = -RW_EIO;
	if (ret == 0) {
		rw_printf("blkevil: %s: status %u\n", kind, (unsigned)*e->status);
		return 0;
	}
	rw_printf("blkevil: %s: %s\n", kind, ret == -RW_ETIMEDOUT ? "timeout" : "needs-reset");
	ret = rw_blk_reset(&e->d);
	if (ret < 0) {
		rw_printf("blkevil: reset failed %d\n", ret);
		return 1;
	}
	return 0;
}

/* Is kind a known name? */
static bool known(const char *kind)
{
	for (unsigned i = 0; i < NKINDS; i++)
		if (!strcmp(kind, all_kinds[i]))
			return true;
	return false;
}

/*
 * The value of "kinds=" (up to the next blank) split at commas into
 * list[], or all kinds when absent or "all". Returns the count, or -1 for
 * an unknown name (copied into bad).
 */
static int parse_kinds(const char *args, char names[][16], unsigned max, char *bad)
{
	const char *p = args;
	unsigned n = 0;

	while (*p) {
		if ((p == args || p[-1] == ' ' || p[-1] == '\t') && !strncmp(p, "kinds=", 6))
			break;
		p++;
	}
	if (!*p || !strncmp(p + 6, "all", 3)) {
		for (unsigned i = 0; i < NKINDS && i < max; i++)
			memcpy(names[n++], all_kinds[i], strlen(all_kinds[i]) + 1);
		return (int)n;
	}
	p += 6;
	while (*p && *p != ' ' && *p != '\t' && n < max) {
		unsigned len = 0;

		while (p[len] && p[len] != ',' && p[len] != ' ' && p[len] != '\t')
			len++;
		if (len) {
			unsigned c = len < 15 ? len : 15;

			memcpy(names[n], p, c);
			names[n][c] = 0;
			if (len > 15 || !known(names[n])) {
				memcpy(bad, names[n], c + 1);
				return -1;
			}
			n++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return (int)n;
}

int rw_main(const char *args)
{
	static struct evil e;
	char names[32][16], bad[16];
	unsigned disk = (unsigned)rw_arg_u64(args, "disk", 0);
	int n, ret;

	n = parse_kinds(args, names, 32, bad);
	if (n < 0) {
		rw_printf("blkevil: unknown kind %s\n", bad);
		return 2;
	}
	ret = rw_blk_open(disk, &e.d);
	if (ret < 0) {
		rw_printf("blkevil: no disk %u (error %d)\n", disk, ret);
		return 2;
	}
	e.data = rw_page_alloc(1);
	if (!e.data) {
		rw_print("blkevil: out of memory\n");
		return 2;
	}
	e.hdr = (struct rw_virtio_blk_req_hdr *)(e.d.scratch + RAW_HDR);
	e.status = e.d.scratch + RAW_STATUS;
	for (int i = 0; i < n; i++)
		if (run_kind(&e, names[i]))
			return 1;
	e.d.spin_limit = SPIN_LIMIT; /* a dead device must not hang the test */
	ret = rw_blk_read(&e.d, 0, e.data, 1);
	if (ret < 0) {
		rw_printf("blkevil: final read failed %d\n", ret);
		return 1;
	}
	rw_print("blkevil: done\n");
	while (rw_arg_has(args, "hold"))
		rw_sleep_ms(1000);
	return 0;
}
