//! Calling an update type: one typed method per export of the
//! `update-type` interface, and its types (the current contract's; a
//! 0.1.0 plugin is adapted here).

use super::bindings::{latest, same_shape, v0_1};
use super::runtime::UpdateTypePre;
use super::{CallState, Plugin, PluginError, PluginRuntime};
use std::sync::Arc;
use wasmtime::Store;

pub use latest::update_type::exports::airlift::plugin::update_type::{DecodedImage, EncodeRequest, UpdateError, UpdateTypeInfo};
use v0_1::update_type::exports::airlift::plugin::update_type as old;

/// An update type to call (see [`super::device_library::DeviceLibrary`]
/// for the two levels of errors).
pub struct UpdateType<'r> {
    runtime: &'r PluginRuntime,
    plugin: Arc<Plugin>,
}

impl PluginRuntime {
    pub fn update_type(&self, plugin: &Arc<Plugin>) -> UpdateType<'_> {
        UpdateType { runtime: self, plugin: plugin.clone() }
    }
}

type Current = latest::update_type::UpdateTypePlugin;
type Old = v0_1::update_type::UpdateTypePlugin;

impl UpdateType<'_> {
    async fn call<R: Send + 'static>(
        &self,
        current: impl FnOnce(&mut Store<CallState>, &Current) -> wasmtime::Result<R> + Send + 'static,
        old: impl FnOnce(&mut Store<CallState>, &Old) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<R, PluginError> {
        self.runtime
            .call_update_type(&self.plugin, move |s, pre| match pre {
                UpdateTypePre::V0_2(p) => {
                    let instance = p.instantiate(&mut *s)?;
                    current(s, &instance)
                }
                UpdateTypePre::V0_1(p) => {
                    let instance = p.instantiate(&mut *s)?;
                    old(s, &instance)
                }
            })
            .await
    }

    pub async fn describe(&self) -> Result<UpdateTypeInfo, PluginError> {
        self.call(|s, p| p.airlift_plugin_update_type().call_describe(s), |s, p| same_shape(&p.airlift_plugin_update_type().call_describe(s)?)).await
    }

    pub async fn encode(&self, request: EncodeRequest) -> Result<Result<Vec<u8>, UpdateError>, PluginError> {
        let request = Arc::new(request);
        let old_request = request.clone();
        self.call(
            move |s, p| p.airlift_plugin_update_type().call_encode(s, &request),
            move |s, p| {
                let r = &*old_request;
                let request = old::EncodeRequest {
                    new_image: r.new_image.clone(),
                    base_image: r.base_image.clone(),
                    new_version: r.new_version,
                    base_version: r.base_version,
                    hardware_target: r.hardware_target,
                    signing_key: r.signing_key.clone(),
                };
                Ok(match p.airlift_plugin_update_type().call_encode(s, &request)? {
                    Ok(payload) => Ok(payload),
                    Err(e) => Err(same_shape(&e)?),
                })
            },
        )
        .await
    }

    pub async fn decode(&self, payload: Vec<u8>, base_image: Option<Vec<u8>>, public_key: Option<Vec<u8>>) -> Result<Result<DecodedImage, UpdateError>, PluginError> {
        let args = Arc::new((payload, base_image, public_key));
        let old_args = args.clone();
        self.call(
            move |s, p| p.airlift_plugin_update_type().call_decode(s, &args.0, args.1.as_deref(), args.2.as_deref()),
            move |s, p| {
                let (payload, base, key) = &*old_args;
                Ok(match p.airlift_plugin_update_type().call_decode(s, payload, base.as_deref(), key.as_deref())? {
                    Ok(d) => Ok(DecodedImage { image: d.image, version: d.version }),
                    Err(e) => Err(same_shape(&e)?),
                })
            },
        )
        .await
    }
}
