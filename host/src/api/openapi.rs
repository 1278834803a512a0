//! The API's routes and their OpenAPI 3.1 description, registered
//! together: a route is added with its documentation or not at all, so
//! `/api/openapi.json` describes every route the router serves. Request
//! bodies carry the schemas derived from the input types (`utoipa`).

use super::auth::required_role;
use super::AppState;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter};
use axum::Router;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, PathsBuilder, RefOr, Required, ResponseBuilder, Schema};
use utoipa::ToSchema;

/// What a route takes in its body.
enum Body {
    None,
    /// JSON of a named schema, with the schemas it refers to.
    Json { name: String, schema: RefOr<Schema>, referred: Vec<(String, RefOr<Schema>)> },
    /// A multipart form, described in words.
    Multipart(&'static str),
}

/// A route's documentation.
pub struct Doc {
    summary: &'static str,
    body: Body,
    query: &'static [&'static str],
}

impl Doc {
    pub fn new(summary: &'static str) -> Self {
        Self { summary, body: Body::None, query: &[] }
    }

    /// The body is JSON of type `T`.
    pub fn json<T: ToSchema>(mut self) -> Self {
        let mut referred = Vec::new();
        T::schemas(&mut referred);
        self.body = Body::Json { name: T::name().into_owned(), schema: T::schema(), referred };
        self
    }

    pub fn multipart(mut self, fields: &'static str) -> Self {
        self.body = Body::Multipart(fields);
        self
    }

    /// Optional query parameters the route reads.
    pub fn query(mut self, names: &'static [&'static str]) -> Self {
        self.query = names;
        self
    }
}

struct Operation {
    methods: Vec<Method>,
    path: String,
    doc: Doc,
    /// Served without a token.
    public: bool,
}

/// Routes with their documentation.
pub struct Routes {
    router: Router<AppState>,
    operations: Vec<Operation>,
}

impl Default for Routes {
    fn default() -> Self {
        Self { router: Router::new(), operations: Vec::new() }
    }
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// `handler` answers `method` on `path`.
    pub fn route<H, T>(self, method: Method, path: &str, handler: H, doc: Doc) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("an HTTP method the router takes");
        self.add(vec![method], path, on(filter, handler), doc)
    }

    /// `handler` answers every method on `path` (networks post, some
    /// check with a GET first); documented as GET and POST.
    pub fn any<H, T>(self, path: &str, handler: H, doc: Doc) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(vec![Method::GET, Method::POST], path, axum::routing::any(handler), doc)
    }

    fn add(mut self, methods: Vec<Method>, path: &str, handler: axum::routing::MethodRouter<AppState>, doc: Doc) -> Self {
        self.router = self.router.route(path, handler);
        self.operations.push(Operation { methods, path: path.to_string(), doc, public: false });
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.operations.extend(other.operations);
        self
    }

    /// Apply layers to the routes so far (they keep their documentation).
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    /// The routes so far need no token.
    pub fn public(mut self) -> Self {
        for op in &mut self.operations {
            op.public = true;
        }
        self
    }

    /// The router, and the document describing it.
    pub fn finish(self) -> (Router<AppState>, OpenApi) {
        let document = document(&self.operations);
        (self.router, document)
    }
}

/// OpenAPI writes path parameters `{name}`; a catch-all `{*rest}` too.
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

fn path_parameters(path: &str) -> Vec<String> {
    openapi_path(path).split('{').skip(1).filter_map(|s| s.split_once('}').map(|(name, _)| name.to_string())).collect()
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        _ => HttpMethod::Get,
    }
}

fn any_json() -> RefOr<Schema> {
    ObjectBuilder::new().description(Some("JSON")).into()
}

fn document(operations: &[Operation]) -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut components = ComponentsBuilder::new().security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    let error = ObjectBuilder::new()
        .property("code", ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer))
        .property("status", ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String))
        .property("error", ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String))
        .property("field", ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String))
        .required("code")
        .required("error");
    components = components.schema("ApiError", error);
    for op in operations {
        for method in &op.methods {
            let role = required_role(method, &op.path);
            let id = format!("{}{}", method.as_str().to_lowercase(), op.path.replace(['/', '{', '}', '*', '-'], "_"));
            let mut operation = OperationBuilder::new()
                .summary(Some(op.doc.summary))
                .operation_id(Some(id))
                .response("200", ResponseBuilder::new().description("Success").content("application/json", ContentBuilder::new().schema(Some(any_json())).build()))
                .response(
                    "default",
                    ResponseBuilder::new().description("An error, in the API's error shape").content("application/json", ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ApiError")))).build()),
                );
            operation = if op.public {
                operation.description(Some("No API token: the caller is authenticated otherwise, or not at all.")).security(SecurityRequirement::default())
            } else {
                operation.description(Some(format!("Needs an API token with the {role:?} role or above.").to_lowercase())).security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            };
            for name in path_parameters(&op.path) {
                operation = operation.parameter(ParameterBuilder::new().name(name).parameter_in(ParameterIn::Path).required(Required::True).schema(Some(ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String))));
            }
            for name in op.doc.query {
                operation = operation.parameter(ParameterBuilder::new().name(*name).parameter_in(ParameterIn::Query).required(Required::False).schema(Some(ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String))));
            }
            operation = match &op.doc.body {
                Body::None => operation,
                Body::Json { name, schema, referred } => {
                    components = components.schema(name.clone(), schema.clone()).schemas_from_iter(referred.iter().cloned());
                    let content = ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name.clone())))).build();
                    operation.request_body(Some(RequestBodyBuilder::new().content("application/json", content).required(Some(Required::True)).build()))
                }
                Body::Multipart(fields) => {
                    let content = ContentBuilder::new().schema(Some(ObjectBuilder::new().description(Some(*fields)))).build();
                    operation.request_body(Some(RequestBodyBuilder::new().content("multipart/form-data", content).required(Some(Required::True)).build()))
                }
            };
            paths = paths.path(openapi_path(&op.path), PathItem::new(http_method(method), operation.build()));
        }
    }
    OpenApiBuilder::new()
        .info(InfoBuilder::new().title("Airlift").version(env!("CARGO_PKG_VERSION")).description(Some("FUOTA campaign engine for LoRaWAN fleets: its REST API.")).build())
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_alls_and_parameters_are_written_the_openapi_way() {
        assert_eq!(openapi_path("/backends/{id}/uplink/{*path}"), "/backends/{id}/uplink/{path}");
        assert_eq!(path_parameters("/backends/{id}/uplink/{*path}"), ["id", "path"]);
        assert!(path_parameters("/api/devices").is_empty());
    }
}
