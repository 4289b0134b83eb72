# facekd — build, test, demo, install.
#   make            build/facekd and build/libfacekd.a
#   make test       install missing Debian packages, build, run every test
#   make demo       install missing packages, build, run the synthetic demo
#   make install PREFIX=/usr/local
#   make SAN=1 …    AddressSanitizer + UndefinedBehaviorSanitizer build (in build-san/)
#   make fuzz       libFuzzer targets (clang, in build-fuzz/), FUZZ_TIME seconds each
#   make MPI=1 …    data-parallel build against Open MPI (in build-mpi/; docs/MPI.md)
#   make test-mpi   the MPI build and its mpirun checks (tests/mpi/)

PREFIX ?= /usr/local
CC ?= gcc
SAN ?= 0
MPI ?= 0

# MPI=1 builds into its own folder (build-mpi, build-san-mpi) so objects never mix.
ifeq ($(MPI),1)
MPI_SUFFIX := -mpi
MPI_CPPFLAGS := -DFKD_MPI $(shell mpicc --showme:compile 2>/dev/null)
MPI_LDLIBS := $(shell mpicc --showme:link 2>/dev/null)
else
MPI_SUFFIX :=
endif

ifeq ($(SAN),1)
BUILD ?= build-san$(MPI_SUFFIX)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build$(MPI_SUFFIX)
SANFLAGS :=
endif

CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -Wall -Wextra -Werror -fopenmp -D_GNU_SOURCE $(SANFLAGS)
CPPFLAGS += -Ilib -I. $(MPI_CPPFLAGS)
LDLIBS += -ldnnl -lyaml -ljpeg -lpng -lz -lprotobuf-c -lm -lpthread $(MPI_LDLIBS)
LDFLAGS += -fopenmp $(SANFLAGS)

LIB_SRC := $(sort $(filter-out lib/cli/%,$(wildcard lib/*/*.c)) $(wildcard teachers/*.c) $(wildcard students/*.c))
CLI_SRC := $(sort $(wildcard lib/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_SUPPORT := $(sort $(wildcard tests/support/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps test test-mpi demo install clean proto ort-check
# Keep test objects between runs (they are intermediate files of the test binaries).
.SECONDARY:
all: $(BUILD)/facekd $(BUILD)/libfacekd.a

deps:
	@bash scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libfacekd.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/facekd: $(CLI_OBJ) $(BUILD)/libfacekd.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libfacekd.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(BUILD)/libfacekd.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(BUILD)/libfacekd.a $(LDLIBS) -lcmocka

test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN)
	@BUILD=$(BUILD) bash scripts/run_tests.sh $(TEST_BIN)

# Builds with MPI=1 (installing Open MPI if missing) and runs tests/mpi/*.sh with mpirun.
test-mpi:
	@bash scripts/deps.sh
	@bash scripts/deps.sh mpi
	@$(MAKE) --no-print-directory MPI=1 all build-mpi/tests/test_dist
	@bash scripts/run_mpi_tests.sh build-mpi

demo: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/demo.sh $(BUILD)/facekd

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/facekd \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/facekd $(DESTDIR)$(PREFIX)/bin/facekd
	install -m 644 $(BUILD)/libfacekd.a $(DESTDIR)$(PREFIX)/lib/libfacekd.a
	install -m 644 lib/facekd.h $(DESTDIR)$(PREFIX)/include/facekd/facekd.h
	cd lib && for h in */*.h; do install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/facekd/$$h; done
	cd teachers && for h in *.h; do [ -e "$$h" ] && install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/facekd/teachers/$$h; done; true
	cd students && for h in *.h; do [ -e "$$h" ] && install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/facekd/students/$$h; done; true
	sed -e 's|@PREFIX@|$(PREFIX)|' scripts/facekd.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/facekd.pc

# The protobuf-c code for lib/io/onnx.proto is committed; regenerate it after editing the schema.
proto:
	protoc-c --proto_path=lib --c_out=lib lib/io/onnx.proto

# Installs onnxruntime-node into build/ort (npm) and checks an exported student there.
ort-check: all
	bash scripts/check_onnxruntime.sh

clean:
	rm -rf build build-san build-fuzz build-mpi build-san-mpi

# ---- fuzzing: tests/fuzz/fuzz_<parser>.c against the library built with clang -------
#   make fuzz [FUZZ_TIME=60] [FUZZ_TARGETS="npy image"]
FUZZ_CC ?= clang
FUZZ_BUILD := build-fuzz
FUZZ_TIME ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# -Wno-pass-failed: clang reports "omp simd" loops it could not vectorize under the sanitizers.
FUZZ_CFLAGS := -O1 -g -std=c11 -Wall -Wextra -Werror -Wno-pass-failed -fopenmp -D_GNU_SOURCE -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libfacekd.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/obj/tests/support/fuzz_file.o $(FUZZ_BUILD)/libfacekd.a
	$(FUZZ_CC) -fopenmp -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LDLIBS)

.PHONY: fuzz fuzz-build
.PRECIOUS: $(FUZZ_BUILD)/obj/%.o
fuzz-build:
	@bash scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzz-build
	@bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)

-include $(shell find $(BUILD)/obj $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
