//! OpenBLAS's single-precision GEMM (`cblas_sgemm`), loaded at run time for the `flex`
//! backend's linear layers ([`super::linear`]).
//!
//! flex multiplies matrices with the `gemm` crate, whose AVX2 kernels reach about 150
//! GFLOP/s on this project's 2-core machine, while OpenBLAS's AVX-512 kernels (Debian's
//! `libopenblas0-pthread`, chosen per CPU at run time) reach about 175 on one core and 340
//! on two for the model's projection shapes, and PyTorch's about 335. The library is
//! `dlopen`ed (`libloading`), so nothing links against it: a machine without it, or with
//! `SONORA_BLAS=0` (or `SONORA_FLEX_KERNELS=0`) in the environment, keeps burn's matmul.
//! OpenBLAS is told to use one thread per call and each product is split in row (or column)
//! blocks over rayon's pool, so it shares the cores with the rest of the step instead of
//! starting threads of its own.

use std::ffi::c_int;
use std::sync::OnceLock;

use rayon::prelude::*;

/// `cblas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`.
type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

/// `openblas_set_num_threads(n)`.
type SetNumThreads = unsafe extern "C" fn(c_int);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// The loaded library and its `cblas_sgemm`.
pub struct Blas {
    sgemm: Sgemm,
    _lib: libloading::Library,
}

/// OpenBLAS, loaded on first use; `None` when it is not installed or is turned off.
pub fn blas() -> Option<&'static Blas> {
    static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
    BLAS.get_or_init(load).as_ref()
}

fn load() -> Option<Blas> {
    let off = std::env::var("SONORA_BLAS").is_ok_and(|v| v == "0");
    if off || !super::flex_kernels() {
        return None;
    }
    for name in ["libopenblas.so.0", "libopenblas.so"] {
        // SAFETY: loading OpenBLAS runs its initialiser, which only sets up its own state.
        let Ok(lib) = (unsafe { libloading::Library::new(name) }) else {
            continue;
        };
        // SAFETY: both symbols have these C signatures in every OpenBLAS release.
        let sgemm = unsafe { lib.get::<Sgemm>(b"cblas_sgemm\0") }
            .ok()
            .map(|s| *s)?;
        if let Ok(set) = unsafe { lib.get::<SetNumThreads>(b"openblas_set_num_threads\0") } {
            // SAFETY: a plain setter; the pool's threads are left idle from here on.
            unsafe { set(1) };
        }
        tracing::debug!("flex linear layers use {name}");
        return Some(Blas { sgemm, _lib: lib });
    }
    None
}

/// A row-major matrix operand: `ptr` to its first element, `ld` its row stride, and
/// whether the operand is the transpose of what is stored.
#[derive(Clone, Copy)]
pub struct Operand {
    /// First element.
    pub ptr: *const f32,
    /// Elements between consecutive stored rows.
    pub ld: usize,
    /// The operand is the stored matrix transposed.
    pub trans: bool,
}

impl Operand {
    /// The row-major matrix in `data` with row stride `ld`.
    pub fn row_major(data: &[f32], ld: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            ld,
            trans: false,
        }
    }

    /// A `rows×cols` matrix at `ptr` with (column, row) strides, when it is row-major
    /// (unit column stride) or the transpose of a row-major one (unit row stride).
    pub fn strided(
        (ptr, cs, rs): (*const f32, isize, isize),
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        if cs == 1 && rs >= cols.max(1) as isize {
            Some(Self {
                ptr,
                ld: rs as usize,
                trans: false,
            })
        } else if rs == 1 && cs >= rows.max(1) as isize {
            Some(Self {
                ptr,
                ld: cs as usize,
                trans: true,
            })
        } else {
            None
        }
    }
}

/// A pointer that may cross to rayon's threads: each task touches its own block.
#[derive(Clone, Copy)]
struct Shared(usize);

/// Rows (or columns) per block are rounded to this many, the kernels' tile height.
const ALIGN: usize = 16;

impl Blas {
    /// `c[m×n] = alpha · a[m×k] · b[k×n]`, row-major, `c` with row stride `ldc`, as one
    /// single-threaded call on this thread (for callers already on rayon's pool).
    ///
    /// # Safety
    /// As for [`Blas::gemm`].
    pub unsafe fn gemm_serial(
        &self,
        dims: (usize, usize, usize),
        a: Operand,
        b: Operand,
        alpha: f32,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { self.call(dims, a, b, (alpha, 0.0), c, ldc) }
    }

    /// One `cblas_sgemm`: `c = alpha · a · b + beta · c`, row-major.
    ///
    /// # Safety
    /// As for [`Blas::gemm`].
    unsafe fn call(
        &self,
        (m, n, k): (usize, usize, usize),
        a: Operand,
        b: Operand,
        (alpha, beta): (f32, f32),
        c: *mut f32,
        ldc: usize,
    ) {
        let trans = |t: bool| if t { TRANS } else { NO_TRANS };
        // SAFETY: the caller's guarantees.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR,
                trans(a.trans),
                trans(b.trans),
                m as c_int,
                n as c_int,
                k as c_int,
                alpha,
                a.ptr,
                a.ld as c_int,
                b.ptr,
                b.ld as c_int,
                beta,
                c,
                ldc as c_int,
            )
        }
    }

    /// `c[m×n] = a[m×k] · b[k×n] + beta · c`, row-major, `c` with row stride `ldc`; split in
    /// blocks of rows of `c` (of columns when `n > m`) over rayon's pool, each block one
    /// single-threaded OpenBLAS call.
    ///
    /// # Safety
    /// `a`, `b` and `c` must address `m×k`, `k×n` and `m×n` matrices (as their operands
    /// say) inside live buffers, `c` must not overlap them, and every dimension and stride
    /// must fit a C `int`.
    pub unsafe fn gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: Operand,
        b: Operand,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    ) {
        let parts = rayon::current_num_threads().max(1);
        let by_rows = m >= n;
        let len = if by_rows { m } else { n };
        let block = len.div_ceil(parts).div_ceil(ALIGN) * ALIGN;
        let (pa, pb, pc) = (
            Shared(a.ptr as usize),
            Shared(b.ptr as usize),
            Shared(c as usize),
        );
        (0..len.div_ceil(block.max(1)))
            .into_par_iter()
            .for_each(|i| {
                let start = i * block;
                let size = block.min(len - start);
                let (pa, pb, pc) = (pa, pb, pc);
                // SAFETY: the caller's matrices contain every block; blocks of c are disjoint.
                unsafe {
                    let (a_ptr, b_ptr, c_ptr, mm, nn) = if by_rows {
                        // rows start..start+size of op(a) and of c
                        let off = if a.trans { start } else { start * a.ld };
                        let a_ptr = (pa.0 as *const f32).add(off);
                        (
                            a_ptr,
                            pb.0 as *const f32,
                            (pc.0 as *mut f32).add(start * ldc),
                            size,
                            n,
                        )
                    } else {
                        // columns start..start+size of op(b) and of c
                        let off = if b.trans { start * b.ld } else { start };
                        let b_ptr = (pb.0 as *const f32).add(off);
                        (
                            pa.0 as *const f32,
                            b_ptr,
                            (pc.0 as *mut f32).add(start),
                            m,
                            size,
                        )
                    };
                    let a = Operand { ptr: a_ptr, ..a };
                    let b = Operand { ptr: b_ptr, ..b };
                    self.call((mm, nn, k), a, b, (1.0, beta), c_ptr, ldc);
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain triple loop over row-major operands.
    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        at: bool,
        b: &[f32],
        bt: bool,
    ) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let x = if at { a[p * m + i] } else { a[i * k + p] };
                    let y = if bt { b[j * k + p] } else { b[p * n + j] };
                    s += x * y;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn every_transpose_and_both_splits_match_a_plain_product() {
        let blas =
            blas().expect("OpenBLAS is loaded (scripts/setup.sh installs libopenblas0-pthread)");
        // m > n splits rows, m < n columns; sizes not multiples of the block alignment
        for (m, n, k) in [(37, 5, 19), (3, 41, 7), (50, 50, 1)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
                let want = reference(m, n, k, &a, at, &b, bt);
                // beta = 1 adds to what c holds
                let mut c = vec![1.0f32; m * n];
                let op = |ptr: &[f32], trans: bool, rows: usize, cols: usize| Operand {
                    ptr: ptr.as_ptr(),
                    ld: if trans { rows } else { cols },
                    trans,
                };
                // SAFETY: the operands and c have exactly these shapes.
                unsafe {
                    blas.gemm(
                        (m, n, k),
                        op(&a, at, m, k),
                        op(&b, bt, k, n),
                        1.0,
                        c.as_mut_ptr(),
                        n,
                    )
                };
                for (g, w) in c.iter().zip(&want) {
                    assert!(
                        (g - 1.0 - w).abs() < 1e-4,
                        "({m},{n},{k}) {at}/{bt}: {g} vs {w}+1"
                    );
                }
            }
        }
    }
}
