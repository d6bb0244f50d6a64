//! A value set once by one thread and taken by another, blocking (`wait`) or from an async task
//! (`poll`), with no runtime of its own, so tickets work under tokio or any executor.

use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};

pub struct Promise<T> {
    state: Mutex<(Option<T>, Option<Waker>)>,
    ready: Condvar,
}

impl<T> Default for Promise<T> {
    fn default() -> Self {
        Promise { state: Mutex::new((None, None)), ready: Condvar::new() }
    }
}

impl<T> Promise<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, value: T) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = Some(value);
        if let Some(w) = s.1.take() {
            w.wake();
        }
        self.ready.notify_all();
    }

    pub fn wait(&self) -> T {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = s.0.take() {
                return v;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
