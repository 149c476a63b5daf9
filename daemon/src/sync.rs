//! Mutex locking that survives a panicked holder: every mutex here guards plain data that
//! stays consistent between statements, so a poisoned lock is still safe to use.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
