# cmdbd — build, run and test.
#
#   make              build/cmdbd (server), build/cmdb (CLI), build/check_cmdb (tests)
#   make run          install what is missing, build, private PostgreSQL under .cmdb/, serve
#   make test         the same set-up, then every test against a throwaway cluster
#   make check        unit tests only (no database: DB suites skip themselves)
#   make valgrind     the test suite with the Check runner and the server under valgrind
#   make SANITIZE=1 [test]   ASan+UBSan build in build/san/ (and tests against it)
#   make WERROR=0     do not turn warnings into errors
#   make bench [SIZE=s|l]   issue 7's benchmark: every cmdbd figure beside a baseline
#                     measured in the same run (own cluster, build in build/bench/,
#                     results in build/bench/results-SIZE.md and .json)
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="json ..."]   the libFuzzer targets of
#                     tests/fuzz/ under ASan+UBSan (clang, build in build/fuzz/), each for
#                     FUZZ_SECONDS; fails on any crash, leak or UB (not part of make test)
#   make install [PREFIX=/usr/local] [DESTDIR=stage]   programs, man pages, completion
#                     (make uninstall removes them); see README.md "Installing"
#   make ui-test-deps   the browser test's npm packages, into build/node (make test does it)
#   make openapi-check   check schema/openapi.yaml itself (no server; the responses of
#                     the end-to-end tests are checked against it by make test)
#   make deps | fmt | clean
#
# Generated sources live in $(BUILD)/gen: migrations.c (the SQL files, embedded),
# ui_assets.c (the web application, cmdbd/ui/src/*, embedded) and suites.h (one SUITE(x)
# per tests/check_x.c), so adding a migration, a page file or a test file needs no edit
# here.

SANITIZE ?= 0
WERROR ?= 1

ifeq ($(SANITIZE),1)
BUILD := build/san
else
BUILD := build
endif
OBJ := $(BUILD)/obj
GEN := $(BUILD)/gen

CC ?= cc
PKG_CONFIG ?= pkg-config
PG_CONFIG ?= pg_config

# --- flags ---------------------------------------------------------------------------

WARNINGS := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
ifneq ($(WERROR),0)
WARNINGS += -Werror
endif

ifeq ($(SANITIZE),1)
OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer
SAN_LDFLAGS := -fsanitize=address,undefined
else
OPT := -O2 -g
SAN_LDFLAGS :=
endif

CFLAGS ?=
LDFLAGS ?=
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(WARNINGS)

# pkg-config/pg_config run once per make, not once per object (:=). A missing package
# shows up as a clear error from the tool (and `make deps` fixes it).
SERVER_PKGS := libevent libevent_openssl openssl jansson uuid
CLIENT_PKGS := jansson libcurl
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(SERVER_PKGS) check 2>/dev/null)
# -pthread: the map loader runs in a thread of its own (cmdbd/loader.h).
SERVER_LIBS := $(shell $(PKG_CONFIG) --libs $(SERVER_PKGS) 2>/dev/null) -pthread
CLIENT_LIBS := $(shell $(PKG_CONFIG) --libs $(CLIENT_PKGS) 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)
PG_INCLUDEDIR := $(shell $(PG_CONFIG) --includedir 2>/dev/null)
PG_LIBDIR := $(shell $(PG_CONFIG) --libdir 2>/dev/null)
PG_CFLAGS := $(if $(PG_INCLUDEDIR),-I$(PG_INCLUDEDIR))
PG_LIBS := $(if $(PG_LIBDIR),-L$(PG_LIBDIR)) -lpq

ALL_CFLAGS = $(BASE_CFLAGS) $(PKG_CFLAGS) $(PG_CFLAGS) $(CFLAGS)
DEPFLAGS = -MMD -MP

# --- sources -------------------------------------------------------------------------

SERVER_SRCS := $(sort $(wildcard cmdbd/*.c))
CLIENT_SRCS := $(sort $(wildcard client/*.c))
# tests/check_*.c: the suites and their runner; tests/pgtest.c: helpers they share
# (tests/bench_*.c are separate programs).
TEST_SRCS := $(sort $(wildcard tests/check_*.c)) tests/pgtest.c
MIGRATIONS := $(sort $(wildcard migrations/[0-9][0-9][0-9][0-9]_*.sql))
# The web application's files (cmdbd/ui/README.md), compiled into cmdbd.
UI_SRCS := $(sort $(wildcard cmdbd/ui/src/*))
# Suite names: tests/check_foo.c -> foo (the runner itself is not a suite).
SUITES := $(filter-out main,$(patsubst tests/check_%.c,%,$(filter tests/check_%.c,$(TEST_SRCS))))

SERVER_OBJS := $(SERVER_SRCS:%.c=$(OBJ)/%.o) $(OBJ)/gen/migrations.o $(OBJ)/gen/ui_assets.o
CLIENT_OBJS := $(CLIENT_SRCS:%.c=$(OBJ)/%.o)
TEST_OBJS := $(TEST_SRCS:%.c=$(OBJ)/%.o)
# Unit tests link the real modules, everything but the server's main(), and the
# client's helpers and its libcurl module (its commands and main() stay out).
LIB_OBJS := $(filter-out $(OBJ)/cmdbd/main.o,$(SERVER_OBJS))
CLIENT_LIB_OBJS := $(filter-out $(OBJ)/client/cmdb.o $(OBJ)/client/cmd_%.o,$(CLIENT_OBJS))

CMDBD := $(BUILD)/cmdbd
CMDB := $(BUILD)/cmdb
CHECK := $(BUILD)/check_cmdb

# --- targets -------------------------------------------------------------------------

.PHONY: all run test check valgrind bench fuzz fuzz-build clean deps fmt install uninstall openapi-check FORCE
.DEFAULT_GOAL := all

all: $(CMDBD) $(CMDB) $(CHECK)

$(CMDBD): $(SERVER_OBJS)
	$(CC) $(OPT) $(SAN_LDFLAGS) $(LDFLAGS) -o $@ $^ $(SERVER_LIBS) $(PG_LIBS)

$(CMDB): $(CLIENT_OBJS)
	$(if $(CLIENT_SRCS),,$(error no client/*.c sources: cannot build $@))
	$(CC) $(OPT) $(SAN_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS)

$(CHECK): $(TEST_OBJS) $(LIB_OBJS) $(CLIENT_LIB_OBJS)
	$(CC) $(OPT) $(SAN_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(SERVER_LIBS) $(PG_LIBS) \
		$(CLIENT_LIBS)

# Server and generated objects see cmdbd/ headers; the client sees only its own, and
# cmdbd/model.h (the vocabulary, for its macros) by relative path (client/ref.h).
$(OBJ)/cmdbd/%.o: cmdbd/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -Icmdbd -c $< -o $@

$(OBJ)/gen/%.o: $(GEN)/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -Icmdbd -c $< -o $@

$(OBJ)/client/%.o: client/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -Iclient -c $< -o $@

# Every test file gets suites.h force-included: it declares all suite_X() functions,
# so each check_X.c defines its suite without a header of its own.
$(OBJ)/tests/%.o: tests/%.c $(GEN)/suites.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -Icmdbd -I$(GEN) -include $(GEN)/suites.h -c $< -o $@

# Generated files are rewritten only when their content changes (FORCE + cmp), so a
# new, renamed or deleted input is noticed without rebuilding everything every time.
$(GEN)/migrations.c: cmdbd/dev/gen-migrations.sh FORCE
	@mkdir -p $(@D)
	@sh cmdbd/dev/gen-migrations.sh $(MIGRATIONS) >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; echo "GEN $@"; fi

$(GEN)/ui_assets.c: cmdbd/dev/gen-ui.sh FORCE
	@mkdir -p $(@D)
	@sh cmdbd/dev/gen-ui.sh $(UI_SRCS) >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; echo "GEN $@"; fi

$(GEN)/suites.h: FORCE
	@mkdir -p $(@D)
	@{ echo '/* Generated by the Makefile from tests/check_*.c: do not edit. */'; \
	   echo '#include <check.h>'; \
	   echo '#ifndef SUITE'; \
	   echo '#define SUITE(name) Suite *suite_##name(void);'; \
	   echo '#endif'; \
	   for s in $(SUITES); do echo "SUITE($$s)"; done; \
	   echo '#undef SUITE'; } >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; echo "GEN $@"; fi

# setpriv: run.sh (and so the server) gets SIGTERM if make itself dies, even by SIGKILL.
run:
	setpriv --pdeathsig TERM bash cmdbd/dev/run.sh

# deps first, then the build (a recursive make, so it runs after the packages exist).
# Scripts run through their interpreter: no reliance on the executable bit.
test:
	sh cmdbd/dev/deps.sh test
	@$(OPENAPI_NPM)
	$(MAKE) --no-print-directory all ui-test-deps
	CMDB_BUILD_DIR=$(BUILD) CMDB_SANITIZE=$(SANITIZE) bash tests/run.sh

check: all
	CMDB_BUILD_DIR=$(BUILD) CMDB_SANITIZE=$(SANITIZE) bash tests/run.sh --no-db

# The official OpenAPI 3.1 meta-schema comes from npm (tests/openapi/package-lock.json);
# without npm, or offline, test_openapi.py says it skipped that check.
OPENAPI_NPM = command -v npm >/dev/null && npm ci --prefix tests/openapi --ignore-scripts \
	--no-audit --no-fund --silent || echo "note: no npm (or offline): the OpenAPI meta-schema check is skipped"

openapi-check:
	sh cmdbd/dev/deps.sh test
	@$(OPENAPI_NPM)
	/usr/bin/python3 tests/e2e/openapi_check.py schema/openapi.yaml

valgrind:
	@command -v valgrind >/dev/null || { echo "valgrind is not installed: apt-get install -y valgrind" >&2; exit 1; }
	$(MAKE) --no-print-directory SANITIZE=0 all
	CMDB_BUILD_DIR=build bash tests/run.sh --valgrind

# The benchmark builds into its own directory (optimised, no sanitizers), then runs
# tests/bench/bench.sh, which starts and removes everything it needs.
SIZE ?= s
BENCH_BUILD := build/bench
BENCH_TOOLS := $(BUILD)/loadgen $(BUILD)/minimal_http
EVENT_LIBS := $(shell $(PKG_CONFIG) --libs libevent 2>/dev/null)

bench:
	sh cmdbd/dev/deps.sh run
	$(MAKE) --no-print-directory BUILD=$(BENCH_BUILD) SANITIZE=0 \
		$(BENCH_BUILD)/cmdbd $(BENCH_BUILD)/loadgen $(BENCH_BUILD)/minimal_http
	CMDB_BUILD_DIR=$(BENCH_BUILD) bash tests/bench/bench.sh $(SIZE)

$(BENCH_TOOLS): $(BUILD)/%: tests/bench/%.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(EVENT_LIBS)

# tests/bench/walkbench.c: the dependents/dependencies walks without HTTP, on the
# in-memory graph's modules (see its header; not part of make bench).
WALKBENCH_OBJS := $(filter $(OBJ)/cmdbd/graph% $(OBJ)/cmdbd/model.o $(OBJ)/cmdbd/strbuf.o \
	$(OBJ)/cmdbd/sha256.o,$(SERVER_OBJS))
$(BUILD)/walkbench: tests/bench/walkbench.c $(WALKBENCH_OBJS)
	$(CC) $(ALL_CFLAGS) -Icmdbd $(SAN_LDFLAGS) $(LDFLAGS) -o $@ $^ $(SERVER_LIBS)

# Fuzzing: the server's modules (all but main) built with clang, sanitizer and
# libFuzzer coverage instrumentation into an archive, one binary per
# tests/fuzz/fuzz_*.c; tests/fuzz/run.sh runs the saved inputs, then each target for
# FUZZ_SECONDS. See tests/fuzz/README.md.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BUILD := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -O1 -g $(WARNINGS) $(FUZZ_SAN) $(PKG_CFLAGS) $(PG_CFLAGS) \
	-Icmdbd $(CFLAGS)
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out cmdbd/main.c,$(SERVER_SRCS))) \
	$(FUZZ_BUILD)/obj/gen/migrations.o $(FUZZ_BUILD)/obj/gen/ui_assets.o
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz:
	sh cmdbd/dev/deps.sh fuzz
	$(MAKE) --no-print-directory fuzz-build
	FUZZ_BUILD_DIR=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/cmdbd/%.o: cmdbd/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(DEPFLAGS) -c $< -o $@

$(FUZZ_BUILD)/obj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(FUZZ_BUILD)/libcmdbd.a: $(FUZZ_LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libcmdbd.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(DEPFLAGS) -MF $@.d $< $(FUZZ_BUILD)/libcmdbd.a \
		-o $@ $(SERVER_LIBS) $(PG_LIBS)
# --- install -------------------------------------------------------------------------
# The programs as built (no rebuild when they are current), their man pages and cmdb's
# bash completion, under $(DESTDIR)$(PREFIX). The systemd unit is an example to adapt
# (examples/systemd/). Checked by tests/e2e/test_install.py.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
INSTALL ?= install
INSTALLED := $(DESTDIR)$(BINDIR)/cmdbd $(DESTDIR)$(BINDIR)/cmdb \
	$(DESTDIR)$(MANDIR)/man8/cmdbd.8 $(DESTDIR)$(MANDIR)/man1/cmdb.1 $(DESTDIR)$(BASHCOMPDIR)/cmdb

install: $(CMDBD) $(CMDB)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(BASHCOMPDIR)
	$(INSTALL) -m 0755 $(CMDBD) $(CMDB) $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 0644 cmdbd/cmdbd.8 $(DESTDIR)$(MANDIR)/man8/cmdbd.8
	$(INSTALL) -m 0644 client/cmdb.1 $(DESTDIR)$(MANDIR)/man1/cmdb.1
	$(INSTALL) -m 0644 client/cmdb.bash-completion $(DESTDIR)$(BASHCOMPDIR)/cmdb

uninstall:
	rm -f $(INSTALLED)

deps:
	sh cmdbd/dev/deps.sh test

# The browser test's npm packages (playwright-core, pinned by cmdbd/ui/package-lock.json)
# are installed by `npm ci` into build/node/, never into the source tree; the page itself
# has no npm dependency (cmdbd/ui/README.md). Reinstalled only when the lockfile changes.
NODE_DIR := build/node
.PHONY: ui-test-deps
ui-test-deps: $(NODE_DIR)/node_modules/.package-lock.json

$(NODE_DIR)/node_modules/.package-lock.json: cmdbd/ui/package.json cmdbd/ui/package-lock.json
	@mkdir -p $(NODE_DIR)
	cp cmdbd/ui/package.json cmdbd/ui/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

fmt:
	@command -v clang-format >/dev/null || { echo "clang-format is not installed: apt-get install -y clang-format" >&2; exit 1; }
	clang-format -i $(wildcard cmdbd/*.[ch] client/*.[ch] tests/*.[ch] tests/fuzz/*.c)

clean:
	rm -rf build

FORCE:

-include $(SERVER_OBJS:.o=.d) $(CLIENT_OBJS:.o=.d) $(TEST_OBJS:.o=.d)
-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:=.d)
