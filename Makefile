# Tandem - build, run, test, bench.
#
#   make                 build bin/command-service bin/query-service bin/migrate
#                        bin/tandem-token
#   make test            dependencies, throwaway PostgreSQL, unit + integration
#   make SANITIZE=1 test the same under ASan+UBSan (also: make asan)
#   make run             the whole system on this machine
#   make bench           benchmarks against same-run baselines (bench-quick)
#   make gateway-routes  deploy/gateway/routes.conf's route table anew from
#                        the binaries' --routes (commit it with the change)
#   V=1                  show full commands

PKGS := libmicrohttpd jansson libpq libcrypto
WARN := -Wall -Wextra -Werror -Wpedantic -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -Wvla -Wjump-misses-init \
	-Wno-format-nonliteral
CFLAGS ?= -O2 -g

ifeq ($(SANITIZE),1)
override SANITIZE := address,undefined
endif
ifdef SANITIZE
SAN := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
MODE := san
else
MODE := rel
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
SCHEMA_LATEST := $(notdir $(lastword $(MIGRATIONS)))

ALL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -MMD -MP \
	$(WARN) $(SAN) -Icommon \
	-DTANDEM_VERSION='"$(VERSION)"' \
	-DTANDEM_SCHEMA_LATEST='"$(SCHEMA_LATEST)"' \
	$(shell pkg-config --cflags $(PKGS)) $(CFLAGS)
ALL_LDLIBS = $(shell pkg-config --libs $(PKGS)) -lpthread -lm $(LDLIBS)
CHECK_LIBS = $(shell pkg-config --libs check)

O ?= build/$(MODE)
B ?= bin

ifndef V
Q = @
QCC = @echo "  CC      $<";
QLD = @echo "  LINK    $@";
endif

COMMON_SRC := $(wildcard common/*.c)
CMD_SRC := $(filter-out command-service/main.c,$(wildcard command-service/*.c))
QRY_SRC := $(filter-out query-service/main.c,\
	$(wildcard query-service/*.c query-service/views/*.c))
UNIT_SRC := $(wildcard tests/unit/check_*.c)
ITOOL_SRC := $(wildcard tests/integration/*.c)
BENCH_SRC := $(wildcard bench/*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(O)/%.o)
CMD_OBJ := $(CMD_SRC:%.c=$(O)/%.o)
QRY_OBJ := $(QRY_SRC:%.c=$(O)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
ITOOL_BIN := $(ITOOL_SRC:tests/integration/%.c=$(O)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(O)/bench/%)

BINS := $(B)/command-service $(B)/query-service $(B)/migrate \
	$(B)/tandem-token

# Relink $(B) when switching between a plain and a sanitizer build.
MODE_STAMP := $(B)/.mode-$(MODE)
$(shell mkdir -p $(B); [ -f $(MODE_STAMP) ] || { rm -f $(B)/.mode-*; \
	touch $(MODE_STAMP); })

# es_db.c has the newest migration's name built in (TANDEM_SCHEMA_LATEST,
# for /ready): recompile it when that name changes, which no source does.
SCHEMA_STAMP := $(O)/.schema-$(SCHEMA_LATEST)
$(shell mkdir -p $(O); [ -f '$(SCHEMA_STAMP)' ] || { rm -f $(O)/.schema-*; \
	touch '$(SCHEMA_STAMP)'; })

all: $(BINS) $(UNIT_BIN) $(ITOOL_BIN) $(BENCH_BIN)

$(O)/common/es_db.o: $(SCHEMA_STAMP)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(QCC)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(O)/libcommon.a: $(COMMON_OBJ)
	$(Q)mkdir -p $(O) && rm -f $@ && ar rcs $@ $^
$(O)/libcmd.a: $(CMD_OBJ)
	$(Q)mkdir -p $(O) && rm -f $@ && ar rcs $@ $^
$(O)/libqry.a: $(QRY_OBJ)
	$(Q)mkdir -p $(O) && rm -f $@ && ar rcs $@ $^

$(B)/command-service: $(O)/command-service/main.o $(O)/libcmd.a \
		$(O)/libcommon.a $(MODE_STAMP)
	@mkdir -p $(B)
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(ALL_LDLIBS)

$(B)/query-service: $(O)/query-service/main.o $(O)/libqry.a \
		$(O)/libcommon.a $(MODE_STAMP)
	@mkdir -p $(B)
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(ALL_LDLIBS)

$(B)/migrate: $(O)/tools/migrate.o $(O)/libcommon.a $(MODE_STAMP)
	@mkdir -p $(B)
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(ALL_LDLIBS)

$(B)/tandem-token: $(O)/tools/tandem-token.o $(O)/libcommon.a $(MODE_STAMP)
	@mkdir -p $(B)
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(ALL_LDLIBS)

$(O)/tests/%: $(O)/tests/unit/%.o $(O)/libcmd.a $(O)/libqry.a \
		$(O)/libcommon.a
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(ALL_LDLIBS)

# Integration programs named qry_* also link the query service's code.
$(O)/tests/qry_%: $(O)/tests/integration/qry_%.o $(O)/libqry.a \
		$(O)/libcommon.a
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(O)/tests/%: $(O)/tests/integration/%.o $(O)/libcommon.a
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

# Benchmark programs (bench/*.c) link the common code.
$(O)/bench/%: $(O)/bench/%.o $(O)/libcommon.a
	$(QLD)$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

# Each header compiles on its own (a header of macros alone too).
hdrcheck:
	$(Q)for h in common/*.h command-service/*.h query-service/*.h \
		query-service/views/*.h; do \
		[ -f "$$h" ] || continue; \
		printf '#include "%s"\nint es_hdrcheck;\n' "$$h" | $(CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -I. -x c \
			-fsyntax-only - || exit 1; \
	done

deps:
	$(Q)scripts/deps

unit: all
	$(Q)TANDEM_BUILD=$(O) TANDEM_BIN=$(B) scripts/run-tests unit

integration: all
	$(Q)TANDEM_BUILD=$(O) TANDEM_BIN=$(B) scripts/run-tests integration

test: deps
	$(Q)$(MAKE) --no-print-directory all hdrcheck
	$(Q)TANDEM_BUILD=$(O) TANDEM_BIN=$(B) scripts/run-tests all

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZE=1 test

run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)TANDEM_BIN=$(B) scripts/run

# Benchmarks are never part of make test. bench/run pins the servers to
# CPU 0 and the load to CPU 1, and writes bench/RESULTS.md and
# bench/results.json (bench-quick: shorter runs, 200,000 events).
bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)TANDEM_BUILD=$(O) TANDEM_BIN=$(B) bench/run full

bench-quick: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)TANDEM_BUILD=$(O) TANDEM_BIN=$(B) bench/run quick

# The gateway's route table comes from the services' own (--routes);
# t0526 fails while the committed file differs from what they print.
GATEWAY_ROUTES := deploy/gateway/routes.conf
gateway-routes: $(B)/command-service $(B)/query-service
	$(Q)scripts/gateway routes $(B) >$(GATEWAY_ROUTES).new || \
		{ rm -f $(GATEWAY_ROUTES).new; exit 1; }
	$(Q)mv $(GATEWAY_ROUTES).new $(GATEWAY_ROUTES)

FORMAT_SRC = $(wildcard common/*.[ch] command-service/*.[ch] \
	query-service/*.[ch] query-service/views/*.[ch] tools/*.c \
	tests/unit/*.c tests/integration/*.c bench/*.c)

format:
	$(Q)clang-format-14 -i $(FORMAT_SRC)

format-check:
	$(Q)clang-format-14 --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build bin

# Wipe the state of make run (its PostgreSQL cluster and logs), in
# TANDEM_STATE if set; a folder that make run never used is left alone.
TANDEM_STATE ?= .tandem
reset:
	$(Q)s='$(TANDEM_STATE)'; \
	if [ -e "$$s" ] && [ ! -e "$$s/run.lock" ]; then \
	echo "reset: '$$s' is not a make run state folder" >&2; exit 1; fi; \
	if [ -e "$$s/run.lock" ] && ! flock -n "$$s/run.lock" true; \
	then echo "reset: make run is running; stop it first" >&2; exit 1; fi
	$(Q)scripts/pg destroy '$(TANDEM_STATE)/pg'
	rm -rf '$(TANDEM_STATE)'

# test objects are not intermediate files to delete
.SECONDARY:

.PHONY: all deps unit integration test asan run bench bench-quick format format-check \
	clean hdrcheck reset gateway-routes

-include $(shell find build -name '*.d' 2>/dev/null)
