//! Engine, per-call stores with limits, and the table of loaded plugins.

use super::bindings::{latest, v0_1};
use super::cache::CompiledCache;
use super::imports::{BackendGrant, HostServices};
use super::PluginError;
use crate::model::{PluginKind, PluginManifest, MAX_REQUEST_TIMEOUT_MS};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// One epoch tick; call deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The data of one call's store.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(crate) plugin: Arc<PluginManifest>,
    pub(crate) host: Arc<HostServices>,
    /// Set for backend calls made on behalf of a backend instance.
    pub(crate) grant: Option<Arc<BackendGrant>>,
    /// When the whole call must be over; host imports that wait (HTTP)
    /// stop by then.
    pub(crate) call_deadline: Instant,
    /// Time spent waiting in host imports: not charged to the plugin's
    /// CPU budget (the epoch deadline).
    pub(crate) io_wait: Duration,
    io_wait_credited: Duration,
    /// A network failure that retrying cannot heal (a certificate that does
    /// not verify, a name that does not resolve), whatever the plugin makes
    /// of it.
    pub(crate) lasting_network_failure: Option<String>,
}

impl CallState {
    /// The call's outcome was decided by a network that cannot be reached
    /// until the operator fixes the instance: why.
    pub fn take_lasting_network_failure(&mut self) -> Option<String> {
        self.lasting_network_failure.take()
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory and remembers that it refused, so a trap that follows
/// an allocation failure is reported as running out of memory.
struct MemoryLimiter {
    max_bytes: usize,
    refused: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The contract version a plugin was built against, from its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    V0_1,
    V0_2,
}

impl Contract {
    /// `major.minor[.patch]` as a manifest's `witVersion` says it.
    pub fn of(wit_version: &str) -> Option<Self> {
        let mut parts = wit_version.split('.');
        match (parts.next(), parts.next()) {
            (Some("0"), Some("1")) => Some(Contract::V0_1),
            (Some("0"), Some("2")) => Some(Contract::V0_2),
            _ => None,
        }
    }
}

/// A device library's instantiation entry point, per contract version.
pub(super) enum DeviceLibraryPre {
    V0_1(v0_1::device_library::DeviceLibraryPluginPre<CallState>),
    V0_2(latest::device_library::DeviceLibraryPluginPre<CallState>),
}

/// A backend's. `offload`: the entry point of its `offload` export, when
/// its network runs whole sessions itself.
pub(super) enum BackendPre {
    V0_1(v0_1::backend::BackendPluginPre<CallState>),
    V0_2 { backend: latest::backend::BackendPluginPre<CallState>, offload: Option<latest::offloading_backend::OffloadingBackendPluginPre<CallState>> },
}

pub(super) enum UpdateTypePre {
    V0_1(v0_1::update_type::UpdateTypePluginPre<CallState>),
    V0_2(latest::update_type::UpdateTypePluginPre<CallState>),
}

/// The instantiation entry point, typed by the world the plugin implements.
enum Typed {
    DeviceLibrary(DeviceLibraryPre),
    Backend(BackendPre),
    UpdateType(UpdateTypePre),
}

/// One loaded plugin version. Calls hold an `Arc` to it, so a swap never
/// disturbs a call already running.
pub struct Plugin {
    pub manifest: Arc<PluginManifest>,
    pub sha256: String,
    /// The compiled code came from the on-disk cache.
    pub compiled_from_cache: bool,
    typed: Typed,
    permits: Arc<Semaphore>,
}

/// The plugin runtime. Cheap to share behind an `Arc`.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: CompiledCache,
    host: Arc<HostServices>,
    /// Active version by plugin name.
    active: RwLock<HashMap<String, Arc<Plugin>>>,
    /// Every loaded version by content hash (campaigns pin by hash).
    by_hash: RwLock<HashMap<String, Arc<Plugin>>>,
    ticker_stop: Arc<AtomicBool>,
    warm: Arc<Warm>,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    /// A runtime caching compiled plugins in `cache_dir`.
    pub fn new(cache_dir: PathBuf, host: Arc<HostServices>) -> Result<Self, PluginError> {
        let mut config = wasmtime::Config::new();
        // Epochs bound a call's time; fuel only measures the work done
        // (each call starts with more than it can use).
        config.wasm_component_model(true).epoch_interruption(true).consume_fuel(true);
        // Instances come from pooled slots with copy-on-write images: each
        // spares a mmap/munmap pair and its TLB shootdowns (engine-bench,
        // 100 campaigns at once: 198–206 → 182 µs per uplink). Calls at
        // once are bounded by each plugin's semaphore (at most 64 per
        // plugin); 256 instances leave room for every plugin a host loads
        // and the warm ones ([`Warm`]). The per-plugin memory limit still
        // applies (the store's limiter).
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size(crate::model::PluginLimits::CEILING.memory_mib as usize * 1024 * 1024);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::Invalid(format!("engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| PluginError::Invalid(format!("wasi: {e}")))?;
        super::imports::add_to_linker(&mut linker).map_err(|e| PluginError::Invalid(format!("imports: {e}")))?;
        let cache = CompiledCache::new(cache_dir, &engine).map_err(|e| PluginError::Storage(e.to_string()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Invalid(format!("epoch thread: {e}")))?;

        Ok(Self {
            engine,
            linker,
            cache,
            host,
            active: RwLock::default(),
            by_hash: RwLock::default(),
            ticker_stop,
            warm: Arc::default(),
        })
    }

    pub fn host(&self) -> &Arc<HostServices> {
        &self.host
    }

    /// Compile (or take from cache) and check a plugin, then make it the
    /// active version of its name. Calls already running keep the old one.
    pub fn load(&self, manifest: PluginManifest, sha256: &str, wasm: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        let plugin = Arc::new(self.prepare(manifest, sha256, wasm)?);
        self.by_hash.write().unwrap().insert(plugin.sha256.clone(), plugin.clone());
        self.active.write().unwrap().insert(plugin.manifest.name.clone(), plugin.clone());
        tracing::info!(plugin = %plugin.manifest.name, version = %plugin.manifest.version, sha256 = %plugin.sha256,
            from_cache = plugin.compiled_from_cache, "plugin active");
        Ok(plugin)
    }

    /// Load a version without making it active (a pinned older version).
    pub fn load_pinned(&self, manifest: PluginManifest, sha256: &str, wasm: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        let plugin = Arc::new(self.prepare(manifest, sha256, wasm)?);
        self.by_hash.write().unwrap().insert(plugin.sha256.clone(), plugin.clone());
        Ok(plugin)
    }

    fn prepare(&self, manifest: PluginManifest, sha256: &str, wasm: &[u8]) -> Result<Plugin, PluginError> {
        let (component, from_cache) = self
            .cache
            .load_or_compile(&self.engine, sha256, wasm)
            .map_err(|e| PluginError::Invalid(format!("not a valid component: {e:#}")))?;
        let typed = self.typed(&manifest, &component)?;
        Ok(Plugin {
            permits: Arc::new(Semaphore::new(manifest.limits.max_concurrent_calls.max(1) as usize)),
            manifest: Arc::new(manifest),
            sha256: sha256.to_string(),
            compiled_from_cache: from_cache,
            typed,
        })
    }

    fn typed(&self, manifest: &PluginManifest, component: &Component) -> Result<Typed, PluginError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| PluginError::Invalid(format!("imports something the host does not provide: {e:#}")))?;
        let world_mismatch =
            |e: wasmtime::Error| PluginError::Invalid(format!("does not implement the {} world of WIT {}: {e:#}", manifest.kind, manifest.wit_version));
        let contract = Contract::of(&manifest.wit_version).ok_or_else(|| PluginError::Invalid(format!("WIT version '{}' is not supported", manifest.wit_version)))?;
        Ok(match (manifest.kind, contract) {
            (PluginKind::DeviceLibrary, Contract::V0_1) => Typed::DeviceLibrary(DeviceLibraryPre::V0_1(v0_1::device_library::DeviceLibraryPluginPre::new(pre).map_err(world_mismatch)?)),
            (PluginKind::DeviceLibrary, Contract::V0_2) => Typed::DeviceLibrary(DeviceLibraryPre::V0_2(latest::device_library::DeviceLibraryPluginPre::new(pre).map_err(world_mismatch)?)),
            (PluginKind::Backend, Contract::V0_1) => Typed::Backend(BackendPre::V0_1(v0_1::backend::BackendPluginPre::new(pre).map_err(world_mismatch)?)),
            (PluginKind::Backend, Contract::V0_2) => {
                // A component that exports `offload` too fits the larger world.
                let offload = latest::offloading_backend::OffloadingBackendPluginPre::new(pre.clone()).ok();
                Typed::Backend(BackendPre::V0_2 { backend: latest::backend::BackendPluginPre::new(pre).map_err(world_mismatch)?, offload })
            }
            (PluginKind::UpdateType, Contract::V0_1) => Typed::UpdateType(UpdateTypePre::V0_1(v0_1::update_type::UpdateTypePluginPre::new(pre).map_err(world_mismatch)?)),
            (PluginKind::UpdateType, Contract::V0_2) => Typed::UpdateType(UpdateTypePre::V0_2(latest::update_type::UpdateTypePluginPre::new(pre).map_err(world_mismatch)?)),
        })
    }

    /// The active version of a plugin.
    pub fn active(&self, name: &str) -> Result<Arc<Plugin>, PluginError> {
        self.active.read().unwrap().get(name).cloned().ok_or_else(|| PluginError::NotFound(name.into()))
    }

    /// A loaded version by content hash.
    pub fn by_hash(&self, sha256: &str) -> Option<Arc<Plugin>> {
        self.by_hash.read().unwrap().get(sha256).cloned()
    }

    /// Active versions, by name.
    pub fn list(&self) -> Vec<Arc<Plugin>> {
        let mut all: Vec<_> = self.active.read().unwrap().values().cloned().collect();
        all.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        all
    }

    /// Call a backend plugin on behalf of a backend instance.
    pub(super) async fn call_backend<R: Send + 'static>(
        &self,
        plugin: &Arc<Plugin>,
        grant: Arc<BackendGrant>,
        f: impl FnOnce(&mut Store<CallState>, &BackendPre) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<R, PluginError> {
        self.call(plugin, Some(grant), PluginKind::Backend, move |store, typed| match typed {
            Typed::Backend(pre) => f(store, pre),
            _ => unreachable!("kind checked before the call"),
        })
        .await
    }

    /// Call an update-type plugin.
    pub(super) async fn call_update_type<R: Send + 'static>(
        &self,
        plugin: &Arc<Plugin>,
        f: impl FnOnce(&mut Store<CallState>, &UpdateTypePre) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<R, PluginError> {
        self.call(plugin, None, PluginKind::UpdateType, move |store, typed| match typed {
            Typed::UpdateType(pre) => f(store, pre),
            _ => unreachable!("kind checked before the call"),
        })
        .await
    }

    /// Run `f` on a blocking thread in a fresh store with the plugin's
    /// limits, mapping traps, deadlines and memory exhaustion to errors.
    async fn call<R: Send + 'static>(
        &self,
        plugin: &Arc<Plugin>,
        grant: Option<Arc<BackendGrant>>,
        expected: PluginKind,
        f: impl FnOnce(&mut Store<CallState>, &Typed) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<R, PluginError> {
        let manifest = plugin.manifest.clone();
        if manifest.kind != expected {
            return Err(PluginError::WrongKind { name: manifest.name.clone(), expected, actual: manifest.kind });
        }
        let _permit = plugin.permits.clone().acquire_owned().await.expect("plugin semaphore never closes");
        let limits = manifest.limits.clone();
        // The epoch deadline stops guest code; this bounds the whole call,
        // time spent in host imports included (a backend's requests may
        // wait up to the longest request timeout).
        let io_allowance = if expected == PluginKind::Backend { MAX_REQUEST_TIMEOUT_MS as u64 } else { 0 };
        let outer = Duration::from_millis(limits.timeout_ms as u64 + io_allowance) + Duration::from_secs(5);
        let stores = StoreMaker { engine: self.engine.clone(), host: self.host.clone(), manifest: manifest.clone(), grant, outer };
        let plugin = plugin.clone();
        let started = Instant::now();
        let job = tokio::task::spawn_blocking(move || {
            let mut store = stores.make();
            let result = f(&mut store, &plugin.typed);
            (result, store.data().limiter.refused, fuel_used(&store))
        });
        let (result, fuel_used) = match tokio::time::timeout(outer, job).await {
            Ok(Ok((result, memory_refused, fuel_used))) => (result.map_err(|e| classify(&manifest, &limits, memory_refused, e)), Some(fuel_used)),
            Ok(Err(join)) => (Err(PluginError::Trap { name: manifest.name.clone(), message: format!("host thread failed: {join}") }), None),
            Err(_) => (Err(PluginError::Timeout { name: manifest.name.clone(), timeout_ms: limits.timeout_ms }), None),
        };
        record_call(&manifest.name, &result, started.elapsed(), fuel_used);
        result
    }

    /// Call a device library once per item, on one blocking thread, in one
    /// instance for as long as its calls succeed (the contract keeps no
    /// state between calls): `instantiate` makes the instance, again after
    /// a call failed, and `each` makes one call. Each call has the
    /// plugin's limits on its own and its own outcome; the outer error is
    /// the whole batch failing (its thread, or every deadline at once).
    ///
    /// With a `scope` (a campaign), the instance is kept warm after the
    /// last call and the next batch of the same scope may start with it
    /// ([`Warm`]); an instance never serves two scopes.
    pub(super) async fn call_device_library_many<T: Send + 'static, I: Send + 'static, R: Send + 'static>(
        &self,
        plugin: &Arc<Plugin>,
        scope: Option<String>,
        items: Vec<I>,
        instantiate: impl Fn(&mut Store<CallState>, &DeviceLibraryPre) -> wasmtime::Result<T> + Send + 'static,
        each: impl Fn(&mut Store<CallState>, &T, I) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<Vec<Result<R, PluginError>>, PluginError> {
        let manifest = plugin.manifest.clone();
        let Typed::DeviceLibrary(_) = &plugin.typed else {
            return Err(PluginError::WrongKind { name: manifest.name.clone(), expected: PluginKind::DeviceLibrary, actual: manifest.kind });
        };
        let _permit = plugin.permits.clone().acquire_owned().await.expect("plugin semaphore never closes");
        let limits = manifest.limits.clone();
        let per_call = Duration::from_millis(limits.timeout_ms as u64) + Duration::from_secs(5);
        let outer = per_call * items.len().max(1) as u32;
        let stores = StoreMaker { engine: self.engine.clone(), host: self.host.clone(), manifest: manifest.clone(), grant: None, outer: per_call };
        let plugin = plugin.clone();
        let warm = self.warm.clone();
        let started = Instant::now();
        let job = tokio::task::spawn_blocking(move || {
            let Typed::DeviceLibrary(pre) = &plugin.typed else { unreachable!("kind checked before the call") };
            let key = scope.map(|scope| (plugin.sha256.clone(), scope));
            let mut live: Option<(Store<CallState>, T)> = key.as_ref().and_then(|k| warm.take(k));
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                let started = Instant::now();
                let (mut store, instance) = match live.take() {
                    Some((mut store, instance)) => {
                        stores.renew(&mut store);
                        (store, instance)
                    }
                    None => {
                        let mut store = stores.make();
                        match instantiate(&mut store, pre) {
                            Ok(instance) => (store, instance),
                            Err(e) => {
                                let result = Err(classify(&stores.manifest, &limits, store.data().limiter.refused, e));
                                record_call(&stores.manifest.name, &result, started.elapsed(), None);
                                results.push(result);
                                continue;
                            }
                        }
                    }
                };
                let result = each(&mut store, &instance, item).map_err(|e| classify(&stores.manifest, &limits, store.data().limiter.refused, e));
                record_call(&stores.manifest.name, &result, started.elapsed(), Some(fuel_used(&store)));
                // A failed call may have left the instance half way: the
                // next one gets a fresh instance.
                if result.is_ok() {
                    live = Some((store, instance));
                }
                results.push(result);
            }
            if let (Some(key), Some((store, instance))) = (key, live) {
                warm.keep(key, store, instance);
            }
            results
        });
        let failed = match tokio::time::timeout(outer, job).await {
            Ok(Ok(results)) => return Ok(results),
            Ok(Err(join)) => PluginError::Trap { name: manifest.name.clone(), message: format!("host thread failed: {join}") },
            Err(_) => PluginError::Timeout { name: manifest.name.clone(), timeout_ms: manifest.limits.timeout_ms },
        };
        // The calls it cut short recorded nothing: the batch counts as one.
        record_call(&manifest.name, &Err::<(), _>(failed.clone()), started.elapsed(), None);
        Err(failed)
    }
}

/// Device-library instances kept between calls, each for the plugin
/// version and campaign it served: a campaign's next call skips
/// instantiating. The contract keeps no state between calls, so this
/// changes nothing a library may rely on; one campaign's instance never
/// serves another, and a failed call's instance is never kept. The least
/// recently used go first beyond [`WARM_INSTANCES`].
#[derive(Default)]
struct Warm {
    idle: std::sync::Mutex<std::collections::VecDeque<Idle>>,
}

struct Idle {
    key: (String, String),
    store: Store<CallState>,
    instance: Box<dyn std::any::Any + Send>,
}

/// Warm instances at most, over all plugins: well within the pool's 256,
/// which also serves every call running.
const WARM_INSTANCES: usize = 32;

impl Warm {
    fn take<T: 'static>(&self, key: &(String, String)) -> Option<(Store<CallState>, T)> {
        let idle = {
            let mut idle = self.idle.lock().unwrap();
            let at = idle.iter().rposition(|i| &i.key == key)?;
            idle.remove(at)?
        };
        let instance = idle.instance.downcast::<T>().ok()?;
        Some((idle.store, *instance))
    }

    fn keep<T: Send + 'static>(&self, key: (String, String), store: Store<CallState>, instance: T) {
        let evicted = {
            let mut idle = self.idle.lock().unwrap();
            idle.push_back(Idle { key, store, instance: Box::new(instance) });
            (idle.len() > WARM_INSTANCES).then(|| idle.pop_front())
        };
        // Dropped outside the lock: it gives its slot back to the pool.
        drop(evicted);
    }
}

/// Makes the stores of one plugin's calls: its memory limit, its time
/// limit in epoch ticks, fuel to count the work done.
struct StoreMaker {
    engine: Engine,
    host: Arc<HostServices>,
    manifest: Arc<PluginManifest>,
    grant: Option<Arc<BackendGrant>>,
    /// The most one call may take, time in host imports included.
    outer: Duration,
}

impl StoreMaker {
    fn make(&self) -> Store<CallState> {
        let limits = &self.manifest.limits;
        let state = CallState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter { max_bytes: limits.memory_mib as usize * 1024 * 1024, refused: false },
            plugin: self.manifest.clone(),
            host: self.host.clone(),
            grant: self.grant.clone(),
            call_deadline: Instant::now() + self.outer,
            io_wait: Duration::ZERO,
            io_wait_credited: Duration::ZERO,
            lasting_network_failure: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Past the deadline, credit the time spent waiting in host
        // imports (a 600 s upload) before trapping.
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            let owed = state.io_wait.saturating_sub(state.io_wait_credited);
            let ticks = (owed.as_millis() / EPOCH_TICK.as_millis()) as u64;
            if ticks == 0 {
                return Err(Trap::Interrupt.into());
            }
            state.io_wait_credited += EPOCH_TICK * ticks as u32;
            Ok(wasmtime::UpdateDeadline::Continue(ticks))
        });
        self.renew(&mut store);
        metrics::counter!("airlift_plugin_instances_total", "plugin" => self.manifest.name.clone()).increment(1);
        store
    }

    /// Give a store a whole call's time, fuel and budget again.
    fn renew(&self, store: &mut Store<CallState>) {
        let ticks = (self.manifest.limits.timeout_ms as u64).div_ceil(EPOCH_TICK.as_millis() as u64).max(1);
        store.set_epoch_deadline(ticks);
        let _ = store.set_fuel(u64::MAX);
        let state = store.data_mut();
        state.call_deadline = Instant::now() + self.outer;
        (state.io_wait, state.io_wait_credited) = (Duration::ZERO, Duration::ZERO);
        // A growth refused in an earlier call that the guest survived must
        // not make this call's trap look like running out of memory.
        state.limiter.refused = false;
    }
}

/// The fuel a store's call used (each call starts with all there is).
fn fuel_used(store: &Store<CallState>) -> u64 {
    u64::MAX - store.get_fuel().unwrap_or(u64::MAX)
}

/// A plugin call in the metrics: its outcome, time and the work it did.
fn record_call<R>(plugin: &str, result: &Result<R, PluginError>, took: Duration, fuel_used: Option<u64>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(PluginError::Trap { .. }) => "trap",
        Err(PluginError::Timeout { .. }) => "timeout",
        Err(PluginError::OutOfMemory { .. }) => "out_of_memory",
        Err(_) => "error",
    };
    metrics::counter!("airlift_plugin_calls_total", "plugin" => plugin.to_string(), "outcome" => outcome).increment(1);
    metrics::histogram!("airlift_plugin_call_seconds", "plugin" => plugin.to_string()).record(took.as_secs_f64());
    if let Some(fuel) = fuel_used {
        metrics::histogram!("airlift_plugin_fuel_used", "plugin" => plugin.to_string()).record(fuel as f64);
    }
}

fn classify(manifest: &PluginManifest, limits: &crate::model::PluginLimits, memory_refused: bool, e: wasmtime::Error) -> PluginError {
    let name = manifest.name.clone();
    if memory_refused {
        return PluginError::OutOfMemory { name, memory_mib: limits.memory_mib };
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return PluginError::Timeout { name, timeout_ms: limits.timeout_ms };
    }
    // The trap's own description, not the wasm backtrace wrapped around it.
    let message = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    tracing::warn!(plugin = %name, %message, "plugin call failed");
    PluginError::Trap { name, message }
}

#[cfg(test)]
impl CallState {
    /// A call's state without an instance, to test host imports directly.
    pub(crate) fn for_tests(manifest: PluginManifest, host: Arc<HostServices>, grant: Option<Arc<BackendGrant>>) -> Self {
        CallState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter { max_bytes: 1 << 20, refused: false },
            plugin: Arc::new(manifest),
            host,
            grant,
            call_deadline: Instant::now() + Duration::from_secs(60),
            io_wait: Duration::ZERO,
            io_wait_credited: Duration::ZERO,
            lasting_network_failure: None,
        }
    }
}
