//! An optional limit on requests per token (`--rate-limit-per-token`):
//! one client's script cannot starve the others. A token over its rate is
//! answered 429 with `Retry-After`; uplinks from networks are not counted
//! (they carry no token and must never be refused for load).

use super::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;

pub struct TokenRateLimit {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl TokenRateLimit {
    /// `per_second` requests a second for each token, in bursts of as many.
    pub fn new(per_second: NonZeroU32) -> Self {
        Self { limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second)) }
    }

    /// Ok when the token named `name` may make a request now; else the
    /// 429 answer to give.
    pub fn check(&self, name: &str) -> Result<(), Response> {
        self.limiter.check_key(&name.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut answer = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "this token's request rate is over the limit; try again later").into_response();
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_has_its_own_budget() {
        let limit = TokenRateLimit::new(NonZeroU32::new(3).unwrap());
        for _ in 0..3 {
            assert!(limit.check("a").is_ok());
        }
        let refused = limit.check("a").unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().get(header::RETRY_AFTER).is_some());
        assert!(limit.check("b").is_ok(), "another token is not held back");
    }
}
