# lwip_serve: the lwIP TCP/IP stack as a Solo5 unikernel (included by
# native/Makefile). Builds only when LWIP_SRC names an unpacked lwIP tree:
#   make -C native ARCH=x86_64 O=/tmp/out LWIP_SRC=/abs/lwip/tree \
#        /tmp/out/lwip_serve.elf
# -> $(O)/lwip_serve.elf (hvt bindings) and $(O)/lwip_serve.spt (same
#    objects and link, spt bindings: SPT_BINDINGS). lwIP's objects go to $(OBJ)/lwip/, ours to $(OBJ)/lwip-port/.
# The lwIP files compiled are listed in sources.txt (also read by
# unikio.lwipsrc.sources()).

ifneq ($(LWIP_SRC),)
override LWIP_SRC := $(abspath $(LWIP_SRC))
LWIP_DIR := $(SRC)/lwip

ifeq ($(wildcard $(LWIP_SRC)/src/include/lwip/init.h),)
$(error LWIP_SRC=$(LWIP_SRC) is no lwIP tree (no src/include/lwip/init.h))
endif

LWIP_FILES := $(shell cat $(LWIP_DIR)/sources.txt)
LWIP_OBJS := $(patsubst %.c,$(OBJ)/lwip/%.o,$(LWIP_FILES))
# Our own files (arch glue, netif, main): every .c in native/lwip, as the
# upstream build takes them too (build_lwip_upstream.py). Objects apart from lwIP's.
LWIP_PORT_OBJS := $(patsubst $(LWIP_DIR)/%.c,$(OBJ)/lwip-port/%.o,\
	$(wildcard $(LWIP_DIR)/*.c))

# No libc headers at all: the compiler's own (stddef.h, stdint.h) plus our
# port directory, whose string.h/stdlib.h shims stand in for a libc's.
# Paths in assertion messages are tree-relative, whatever LWIP_SRC is.
LWIP_CFLAGS := $(GUEST_CFLAGS) -nostdinc \
	-isystem $(shell $(CC) -print-file-name=include) \
	-I$(LWIP_DIR) -I$(LWIP_SRC)/src/include -MMD -MP \
	-ffile-prefix-map=$(LWIP_SRC)/= -ffile-prefix-map=$(SRC)/=native/

# lwIP's own files: same warnings, as errors, as our code.
$(OBJ)/lwip/%.o: $(LWIP_SRC)/%.c $(LWIP_DIR)/sources.txt
	@mkdir -p $(@D)
	$(CC) $(LWIP_CFLAGS) -c $< -o $@

$(OBJ)/lwip-port/%.o: $(LWIP_DIR)/%.c
	@mkdir -p $(@D)
	$(CC) $(LWIP_CFLAGS) -c $< -o $@

$(O)/lwip_serve.elf: $(LWIP_PORT_OBJS) $(LWIP_OBJS) \
		$(BINDINGS) $(SRC)/solo5/solo5.lds | $(O)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) $(filter %.o,$^) -lgcc -o $@

$(O)/lwip_serve.spt: $(LWIP_PORT_OBJS) $(LWIP_OBJS) \
		$(SPT_BINDINGS) $(SRC)/solo5/solo5.lds | $(O)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) $(filter %.o,$^) -lgcc -o $@

-include $(LWIP_OBJS:.o=.d) $(LWIP_PORT_OBJS:.o=.d)
endif
