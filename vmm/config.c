#include "config.h"

#include <string.h>

void config_init(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mem_size = 64ULL << 20;
	cfg->ncpus = 1;
	cfg->entry = VM_ENTRY_KERNEL;
	cfg->serial_in = true;
}
