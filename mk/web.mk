# The browser runner and the wasm baseline engines (issue 15): Debian's chromium (apt, as
# root) and the npm packages pinned EXACTLY in targets/web/package.json / package-lock.json,
# installed into targets/web/node_modules. puppeteer-core has no browser of its own and
# PUPPETEER_SKIP_DOWNLOAD stops anything from fetching one; the runner points it at
# /usr/bin/chromium. MNN (host baseline engine) is pinned into the main venv here too.
APT_PACKAGES += chromium
WEB_DIR := targets/web
TEST_DEPS += $(WEB_DIR)/node_modules/.installed $(VENV)/.mnn-installed

$(WEB_DIR)/node_modules/.installed: $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts
	touch $@

$(VENV)/.mnn-installed: mk/web.mk
	$(BIN)/python -m pip install -q 'MNN==3.6.1'
	touch $@
