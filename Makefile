# superd: build, install and package. Needs only Go, gcc and git.
#
#   make                     build ./superd
#   make install             install under $(DESTDIR)$(PREFIX) (default /usr)
#   make package             dist/superd_<version>_<arch>.deb and
#                            dist/superd-<version>-1.<arch>.rpm (nfpm)
#   make clean
#   make bench               superd against busybox inetd, tcpserver, xinetd
#                            and the C/Go floors (bench/bench.sh; root, a few minutes)
#   make bench-quick         the same in tiny settings: checks only that every
#                            target serves every reply (CI runs it once)
#   make bench-scale         idle CPU and memory, 1,000 services, reload,
#                            10,000 open connections (bench/scale)
#
# VERSION and COMMIT are stamped into the binary (`superd version`);
# override them on the command line, e.g. make VERSION=1.2.3 package.

GO      ?= go
PREFIX  ?= /usr
DESTDIR ?=
SYSCONFDIR ?= /etc

# packaging/version.sh: git describe made into a valid deb/rpm version,
# falling back to the file VERSION, then to 0.1.0. Each is computed once,
# unless given on the command line or in the environment.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell sh packaging/version.sh)
endif
ifeq ($(origin COMMIT),undefined)
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
endif
ifeq ($(origin GOARCH),undefined)
GOARCH := $(shell $(GO) env GOARCH)
endif
ifeq ($(VERSION),)
$(error packaging/version.sh found no version; give one: make VERSION=1.2.3)
endif

# -trimpath and -s -w: no build paths or debug tables in the binary;
# panics still print symbolized stacks. CGO_ENABLED=0: a static binary
# without libc mapped in (2 MiB less resident, see docs/performance.md);
# users and groups then come from /etc/passwd and /etc/group only. For
# users from NSS (LDAP, sssd), build with make CGO_ENABLED=1.
CGO_ENABLED ?= 0
LDFLAGS  = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOBUILD  = CGO_ENABLED=$(CGO_ENABLED) $(GO) build -trimpath -ldflags "$(LDFLAGS)"

BINDIR     = $(PREFIX)/sbin
UNITDIR    = $(PREFIX)/lib/systemd/system
MANDIR     = $(PREFIX)/share/man
DOCDIR     = $(PREFIX)/share/doc/superd
CONFDIR    = $(SYSCONFDIR)/superd

BUILD = dist/build
MANPAGES = packaging/man/superd.8 packaging/man/superd.toml.5

.PHONY: all superd install uninstall package clean FORCE

all: superd

# Phony: always handed to go build, which knows best what is out of date.
superd:
	$(GOBUILD) -o superd ./cmd/superd

install: superd
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(CONFDIR)/services.d
	install -m 755 superd $(DESTDIR)$(BINDIR)/superd
	@# The unit names the binary and the configuration by path.
	sed -e 's|/usr/sbin/superd|$(BINDIR)/superd|g' -e 's|/etc/superd/|$(CONFDIR)/|g' \
		packaging/systemd/superd.service > $(DESTDIR)$(UNITDIR)/superd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/superd.service
	install -m 644 packaging/systemd/superd.socket $(DESTDIR)$(UNITDIR)/
	install -m 644 packaging/man/superd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 packaging/man/superd.toml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/
	install -m 644 packaging/examples/services.toml packaging/systemd/superd-strict.conf $(DESTDIR)$(DOCDIR)/examples/
	install -m 755 packaging/examples/hello.sh packaging/examples/reverse.pl $(DESTDIR)$(DOCDIR)/examples/
	@# The admin's configuration is never overwritten.
	@if [ -e $(DESTDIR)$(CONFDIR)/services.toml ]; then \
		echo "keeping the existing $(DESTDIR)$(CONFDIR)/services.toml"; \
	else \
		echo "install -m 644 packaging/services.toml $(DESTDIR)$(CONFDIR)/services.toml"; \
		install -m 644 packaging/services.toml $(DESTDIR)$(CONFDIR)/services.toml; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		echo systemctl daemon-reload; systemctl daemon-reload; \
	fi

# Removes what install put there except the configuration.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/superd \
		$(DESTDIR)$(UNITDIR)/superd.service $(DESTDIR)$(UNITDIR)/superd.socket \
		$(DESTDIR)$(MANDIR)/man8/superd.8 $(DESTDIR)$(MANDIR)/man5/superd.toml.5
	rm -rf $(DESTDIR)$(DOCDIR)

# The binary and the gzipped man pages the packages ship (nfpm copies
# files as they are; Debian wants man pages compressed).
$(BUILD)/superd: FORCE
	@mkdir -p $(BUILD)/man
	$(GOBUILD) -o $@ ./cmd/superd

$(BUILD)/man/%.gz: packaging/man/%
	@mkdir -p $(BUILD)/man
	gzip -9 -n -c $< > $@

package: $(BUILD)/superd $(addprefix $(BUILD)/man/,$(addsuffix .gz,$(notdir $(MANPAGES))))
	@mkdir -p dist
	rm -f dist/*.deb dist/*.rpm
	@# --target dist/: nfpm's conventional names, with the architecture
	@# in each format's own words (amd64, x86_64).
	SUPERD_VERSION=$(VERSION) GOARCH=$(GOARCH) $(GO) tool nfpm package \
		--config packaging/nfpm.yaml --packager deb --target dist/
	SUPERD_VERSION=$(VERSION) GOARCH=$(GOARCH) $(GO) tool nfpm package \
		--config packaging/nfpm.yaml --packager rpm --target dist/
	@ls -l dist/*.deb dist/*.rpm

clean:
	rm -rf dist superd

FORCE:

# bench/bench.sh builds what it runs itself; its knobs (ROUNDS, DURATION,
# CONCS, STRACE=1, ...) pass through the environment.
.PHONY: bench bench-quick bench-scale
bench:
	bash bench/bench.sh

bench-scale: superd
	$(GO) run ./bench/scale -superd ./superd

bench-quick:
	QUICK=1 ROUNDS=1 DURATION=1 CONCS="1 8" N=2000 WARMUP=50 bash bench/bench.sh
