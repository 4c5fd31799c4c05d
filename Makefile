# BizOSaaS-C - one non-recursive Makefile for libcommon, ten services, tests.
#
#   make                 build build/libcommon.a and build/bin/<service>
#   make test            install deps, build, run unit + integration tests
#                        against a throwaway PostgreSQL and Redis
#   make run             install deps, build, start the local stack under ./var
#   make checksrc        clang-format check + banned-function check
#   make SANITIZE=address,undefined test   the same under ASan/UBSan
#   make clean

SERVICES := brain event-bus crm cms agents telegram image temporal-worker \
	    vault-client dashboard-server

ifneq ($(SANITIZE),)
BUILD ?= build/san
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer \
	    -fno-sanitize-recover=all
else
BUILD ?= build
SANFLAGS :=
endif

CC ?= cc
PKGS := libevent libevent_pthreads libpq hiredis libcjson libcurl libjwt \
	openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	  -Wno-format-nonliteral -fno-strict-aliasing -pthread $(SANFLAGS)
CPPFLAGS += -Ilib/common/include -Itests/support $(PKG_CFLAGS) -D_GNU_SOURCE \
	    -DCM_VERSION='"$(VERSION)"' -MMD -MP
LDFLAGS += -pthread $(SANFLAGS)
LDLIBS := $(PKG_LIBS) -lm

LIB_SRC := $(wildcard lib/common/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libcommon.a
BINS := $(SERVICES:%=$(BUILD)/bin/%)

# Service objects: every .c in services/<name>/. main.c is left out of the
# per-service test binaries so tests can link the rest.
svc_src = $(wildcard services/$(1)/*.c)
svc_obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(call svc_src,$(1)))
svc_lib_obj = $(filter-out %/main.o,$(call svc_obj,$(1)))

LIB_TESTS_SRC := $(wildcard tests/lib/test_*.c)
LIB_TESTS := $(LIB_TESTS_SRC:tests/%.c=$(BUILD)/tests/%)
SVC_TESTS_SRC := $(wildcard tests/services/*/test_*.c)
SVC_TESTS := $(SVC_TESTS_SRC:tests/%.c=$(BUILD)/tests/%)
INT_TESTS_SRC := $(wildcard tests/integration/test_*.c)
INT_TESTS := $(INT_TESTS_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_SRC := $(wildcard tests/support/*.c)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/obj/%.o)
FAKES_SRC := $(wildcard tests/fakes/*.c)
FAKES := $(FAKES_SRC:tests/fakes/%.c=$(BUILD)/fakes/%)

.PHONY: all test run checksrc clean deps tests bench test-containers
.SECONDARY:
all: $(LIB) $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

define service_rule
$(BUILD)/bin/$(1): $(call svc_obj,$(1)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))

$(BUILD)/tests/lib/%: $(BUILD)/obj/tests/lib/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o \
		$(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

# tests/services/<svc>/test_x.c links the service's objects except main.o.
.SECONDEXPANSION:
$(BUILD)/tests/services/%: $(BUILD)/obj/tests/services/%.o \
		$$(call svc_lib_obj,$$(firstword $$(subst /, ,$$*))) \
		$(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

$(BUILD)/fakes/%: $(BUILD)/obj/tests/fakes/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests: all $(LIB_TESTS) $(SVC_TESTS) $(INT_TESTS) $(FAKES)

deps:
	@scripts/install-deps

test: deps
	@$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) scripts/test-run

run: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/run

bench: all
	@scripts/bench http

checksrc:
	@scripts/checksrc

# Build every image and run the whole stack in containers (Docker or
# Podman; installs Podman when needed). See docs/deploy.md.
test-containers:
	@scripts/test-containers $(TEST_CONTAINERS_ARGS)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
