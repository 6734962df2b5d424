# xtgrad: `make test` and `make train` work on a fresh Debian 12 box.
BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= 2

# What the build needs from Debian. ccache only speeds up rebuilds.
PACKAGES := cmake make g++ libxtensor-dev libxtensor-blas-dev libopenblas-dev doctest-dev nlohmann-json3-dev libcli11-dev libstb-dev ccache
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps configure build test train bench clean

all: build

# Installs only the packages that are missing; does nothing when all are present.
deps:
	@missing=""; \
	for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

# The toy task with its defaults (../shared/TASK.md); the run lands in runs/align.
train: build
	$(BUILD_DIR)/bin/xtgrad-align train $(TRAIN_FLAGS)

bench: build
	$(BUILD_DIR)/bin/xtgrad-bench

clean:
	rm -rf $(BUILD_DIR)
