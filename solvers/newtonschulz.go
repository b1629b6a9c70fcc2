package solvers

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/blas/gonum"
)

// NSCoefs are the coefficients of one Newton–Schulz step X ← a·X + (b·A + c·A²)·X with A = X·Xᵀ. The step
// keeps the singular vectors of X and maps each singular value through σ ↦ a·σ + b·σ³ + c·σ⁵.
type NSCoefs struct{ A, B, C float64 }

var (
	// NSQuintic is Keller Jordan's quintic (a, b, c) = (3.4445, −4.7750, 2.0315) (KellerJordan/Muon,
	// muon.py, zeropower_via_newtonschulz5): chosen to maximise the slope at 0, so 5 steps take every
	// singular value σ/‖X‖_F ≥ 0.0013 into about [0.6, 1.2] (not to 1: the result is U·S′·Vᵀ, S′ ≈ I).
	NSQuintic = NSCoefs{A: 3.4445, B: -4.7750, C: 2.0315}
	// NSCubic is the classical cubic Newton–Schulz step σ ↦ 1.5σ − 0.5σ³: it converges to 1 for
	// σ ∈ (0, √3) but slowly from small σ (5 steps leave σ = 0.01 at 0.076).
	NSCubic = NSCoefs{A: 1.5, B: -0.5, C: 0}
)

// Defaults of the Newton–Schulz orthogonalisation, as in zeropower_via_newtonschulz5.
const (
	DefaultNSSteps = 5    // iterations
	DefaultNSEps   = 1e-7 // added to the Frobenius norm before dividing
)

// nsTile is the side of the output tiles the products are split into. 64 is gonum's block size: a
// 64×64 tile stays on gonum's serial kernel, whose Sgemm/Dgemm otherwise starts a goroutine per block
// (and allocates) on every call.
const nsTile = 64

// NewtonSchulz orthogonalises matrices by the Newton–Schulz iteration of Muon (Keller Jordan, "Muon: An
// optimizer for hidden layers in neural networks", reference code KellerJordan/Muon muon.py
// zeropower_via_newtonschulz5; the same function is in MoonshotAI/Moonlight examples/toy_train.py):
//
//	X = G/(‖G‖_F + eps);  if rows > cols: X = Xᵀ            (work on the wide orientation)
//	for k = 0 … Steps−1:  A = X·Xᵀ;  B = b_k·A + c_k·A·A;  X ← a_k·X + B·X
//	if rows > cols: X = Xᵀ
//
// with (a_k, b_k, c_k) = Coefs[min(k, len(Coefs)−1)] (NSQuintic every step when Coefs is empty), so a
// per-step schedule (the cubic, Polar Express's coefficient lists, ...) can be plugged in. Since the
// iteration is a polynomial in X·Xᵀ, NS(Gᵀ) = NS(G)ᵀ; this implementation transposes tall inputs into
// the same wide work matrix, so for non-square matrices the identity holds bit for bit.
//
// Every matrix product goes through BLAS (gonum's blas32/blas64 Sgemm/Dgemm, NoTrans×Trans form, whose
// dot-product kernel is gonum's fastest). With gonum's native implementation the products are split into
// 64×64 output tiles spread over the package's worker goroutines, and the two symmetric products (X·Xᵀ
// and A·A = A·Aᵀ) compute only the upper tiles and mirror them; with another implementation registered
// through blas32.Use/blas64.Use each product is one call. Buffers are allocated at the first call for a
// size and reused: later calls of the same or a smaller size allocate nothing. A NewtonSchulz is not safe
// for concurrent use.
type NewtonSchulz[T Float] struct {
	// Steps is the number of iterations (DefaultNSSteps from NewNewtonSchulz; 0 returns G/(‖G‖_F+eps)).
	Steps int
	// Coefs are the per-step coefficients; step k uses Coefs[min(k, len(Coefs)−1)]; empty means NSQuintic.
	Coefs []NSCoefs
	// Eps is added to the Frobenius norm (DefaultNSEps from NewNewtonSchulz).
	Eps float64

	x, xt, a, b []T // work matrices: X (n×m), Xᵀ (m×n), A and B (n×n)
	gemm        nsGemmJob[T]
	trans       nsTransposeJob[T]
	wg          sync.WaitGroup
}

// NewNewtonSchulz returns the default orthogonaliser: 5 quintic steps (NSQuintic), eps 1e-7.
func NewNewtonSchulz[T Float]() *NewtonSchulz[T] {
	return &NewtonSchulz[T]{Steps: DefaultNSSteps, Eps: DefaultNSEps}
}

// Coef returns the coefficients of step k (from 0).
func (ns *NewtonSchulz[T]) Coef(k int) NSCoefs {
	if len(ns.Coefs) == 0 {
		return NSQuintic
	}
	return ns.Coefs[min(k, len(ns.Coefs)-1)]
}

// WorkspaceBytes returns the memory held by the work matrices (2·rows·cols + 2·min(rows, cols)² elements
// for the largest matrix seen).
func (ns *NewtonSchulz[T]) WorkspaceBytes() int64 {
	var z T
	return int64(cap(ns.x)+cap(ns.xt)+cap(ns.a)+cap(ns.b)) * int64(unsafe.Sizeof(z))
}

// check validates the settings and the arguments of Apply.
func (ns *NewtonSchulz[T]) check(dst, src []T, rows, cols int) error {
	if rows < 1 || cols < 1 {
		return errors.Errorf("newton-schulz: matrix shape %dx%d", rows, cols)
	}
	if len(src) != rows*cols || len(dst) != rows*cols {
		return errors.Errorf("newton-schulz: %dx%d matrix needs %d elements, got src %d, dst %d", rows, cols, rows*cols, len(src), len(dst))
	}
	if ns.Steps < 0 {
		return errors.Errorf("newton-schulz: negative step count %d", ns.Steps)
	}
	if !(ns.Eps >= 0) || math.IsInf(ns.Eps, 0) {
		return errors.Errorf("newton-schulz: eps %v must be a finite number >= 0", ns.Eps)
	}
	for k, c := range ns.Coefs {
		if !isFinite(c.A) || !isFinite(c.B) || !isFinite(c.C) {
			return errors.Errorf("newton-schulz: coefficients of step %d are not finite: %+v", k, c)
		}
	}
	return nil
}

// Apply writes the orthogonalised src (a rows×cols row-major matrix) into dst; dst may be src.
func (ns *NewtonSchulz[T]) Apply(dst, src []T, rows, cols int) error {
	if err := ns.check(dst, src, rows, cols); err != nil {
		return err
	}
	n, m := min(rows, cols), max(rows, cols) // X is n×m, n ≤ m
	ns.x, ns.xt = growSlice(ns.x, n*m), growSlice(ns.xt, n*m)
	ns.a, ns.b = growSlice(ns.a, n*n), growSlice(ns.b, n*n)
	x, xt, a, b := ns.x, ns.xt, ns.a, ns.b

	// X = G (or Gᵀ), then X/(‖X‖_F + eps); the norm is taken in the wide orientation, so that a matrix
	// and its transpose are normalised identically.
	if rows <= cols {
		copy(x, src)
	} else {
		ns.transpose(src, rows, cols, x)
	}
	den := T(nsFrobenius(x)) + T(ns.Eps)
	for i, v := range x {
		x[i] = v / den
	}
	for k := 0; k < ns.Steps; k++ {
		c := ns.Coef(k)
		// A = X·Xᵀ (symmetric: upper tiles only, mirrored)
		ns.product(true, n, n, m, 1, x, m, x, m, 0, a, n, nil)
		// X·Xᵀ's transpose partner for the last product: B·X = B·(Xᵀ)ᵀ in NoTrans×Trans form.
		ns.transpose(x, n, m, xt)
		if c.C == 0 {
			// cubic: X ← a·X + b·(A·X)
			ns.product(false, n, m, n, T(c.B), a, n, xt, n, T(c.A), x, m, nil)
			continue
		}
		// B = b·A + c·A·A, A·A = A·Aᵀ (symmetric)
		ns.product(true, n, n, n, T(c.C), a, n, a, n, T(c.B), b, n, a)
		// X ← a·X + B·X, written over X (the product reads Xᵀ from xt)
		ns.product(false, n, m, n, 1, b, n, xt, n, T(c.A), x, m, nil)
	}
	if rows <= cols {
		copy(dst, x)
	} else {
		ns.transpose(x, n, m, dst)
	}
	return nil
}

// nsFrobenius returns the Frobenius norm of x, accumulated in float64.
func nsFrobenius[T Float](x []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		v := float64(x[i])
		s0 += v * v
	}
	return math.Sqrt((s0 + s1) + (s2 + s3))
}

// nsParallelWork is the number of multiply-adds below which a product or transpose runs on the calling
// goroutine alone.
const nsParallelWork = 1 << 18

// product computes C = alpha·A·Bᵀ + beta·C (C is m×n, A is m×k with leading dimension lda, B is n×k).
// If init is not nil, C starts as a copy of init (same layout as C) instead of its own contents. With
// sym, the result is symmetric (m = n, A·Bᵀ symmetric, init symmetric): only the upper tiles are
// computed and mirrored.
func (ns *NewtonSchulz[T]) product(sym bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int, init []T) {
	j := &ns.gemm
	tile := nsTile
	if !nsNativeBLAS[T]() {
		tile, sym = max(m, n), false // one call: a foreign BLAS parallelises its own way
	}
	*j = nsGemmJob[T]{m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
		init: init, sym: sym, tile: tile, tm: (m + tile - 1) / tile, tn: (n + tile - 1) / tile}
	if sym {
		j.ntiles = j.tm * (j.tm + 1) / 2
	} else {
		j.ntiles = j.tm * j.tn
	}
	nsRun(j, j.ntiles, m*n*k, &ns.wg)
	j.a, j.b, j.c, j.init = nil, nil, nil, nil
}

// transpose writes src (rows×cols) transposed into dst (cols×rows).
func (ns *NewtonSchulz[T]) transpose(src []T, rows, cols int, dst []T) {
	j := &ns.trans
	*j = nsTransposeJob[T]{src: src, dst: dst, rows: rows, cols: cols,
		tr: (rows + nsTile - 1) / nsTile, tc: (cols + nsTile - 1) / nsTile}
	nsRun(j, j.tr*j.tc, rows*cols*8, &ns.wg)
	j.src, j.dst = nil, nil
}

// nsTileJob is a set of independent tiles that workers take one at a time.
type nsTileJob interface {
	rangeJob
	reset()
}

// nsRun runs the ntiles tiles of job, across the package's workers when the work is large enough. Each
// participating goroutine takes tiles from a shared counter until none are left, so a core slowed by
// other work takes fewer tiles.
func nsRun(job nsTileJob, ntiles, work int, wg *sync.WaitGroup) {
	job.reset()
	if ntiles <= 1 || work < nsParallelWork {
		job.runRange(0, ntiles)
		return
	}
	// parallelRange hands each worker one range of [0, ntiles·minChunk); the ranges are ignored, the
	// tiles are taken from the job's counter.
	parallelRange(ntiles*minChunk, job, wg)
}

// nsGemmJob is one tiled product (see NewtonSchulz.product).
type nsGemmJob[T Float] struct {
	m, n, k       int
	alpha, beta   T
	a, b, c, init []T
	lda, ldb, ldc int
	sym           bool
	tile          int
	tm, tn        int
	ntiles        int
	next          atomic.Int64
}

func (j *nsGemmJob[T]) reset() { j.next.Store(0) }

// runRange computes tiles taken from the shared counter until all are done.
func (j *nsGemmJob[T]) runRange(int, int) {
	for {
		t := int(j.next.Add(1) - 1)
		if t >= j.ntiles {
			return
		}
		var bi, bj int
		if j.sym { // t-th tile of the upper block triangle, row by row
			bi = 0
			for t >= j.tm-bi {
				t -= j.tm - bi
				bi++
			}
			bj = bi + t
		} else {
			bi, bj = t/j.tn, t%j.tn
		}
		i0, j0 := bi*j.tile, bj*j.tile
		mi, nj := min(j.tile, j.m-i0), min(j.tile, j.n-j0)
		c := j.c[i0*j.ldc+j0:]
		if j.init != nil {
			src := j.init[i0*j.ldc+j0:]
			for r := 0; r < mi; r++ {
				copy(c[r*j.ldc:r*j.ldc+nj], src[r*j.ldc:r*j.ldc+nj])
			}
		}
		nsGemmNT(mi, nj, j.k, j.alpha, j.a[i0*j.lda:], j.lda, j.b[j0*j.ldb:], j.ldb, j.beta, c, j.ldc)
		if j.sym && bj > bi { // mirror into the lower tile (bj, bi), which no other tile writes
			nsTransposeBlock(c, j.ldc, j.c[j0*j.ldc+i0:], j.ldc, mi, nj)
		}
	}
}

// nsTransposeJob is a blocked transpose (see NewtonSchulz.transpose).
type nsTransposeJob[T Float] struct {
	src, dst   []T
	rows, cols int
	tr, tc     int
	next       atomic.Int64
}

func (j *nsTransposeJob[T]) reset() { j.next.Store(0) }

func (j *nsTransposeJob[T]) runRange(int, int) {
	for {
		t := int(j.next.Add(1) - 1)
		if t >= j.tr*j.tc {
			return
		}
		i0, c0 := (t/j.tc)*nsTile, (t%j.tc)*nsTile
		nsTransposeBlock(j.src[i0*j.cols+c0:], j.cols, j.dst[c0*j.rows+i0:], j.rows, min(nsTile, j.rows-i0), min(nsTile, j.cols-c0))
	}
}

// nsTransposeBlock writes the rows×cols block at src (leading dimension lds) transposed at dst (leading
// dimension ldd). It goes by 8×8 sub-blocks: with power-of-two leading dimensions the strided writes of
// a longer run fall into the same cache set and evict each other.
func nsTransposeBlock[T Float](src []T, lds int, dst []T, ldd int, rows, cols int) {
	const b = 8
	for i0 := 0; i0 < rows; i0 += b {
		i1 := min(i0+b, rows)
		for c0 := 0; c0 < cols; c0 += b {
			c1 := min(c0+b, cols)
			for i := i0; i < i1; i++ {
				for s, v := range src[i*lds+c0 : i*lds+c1] {
					dst[(c0+s)*ldd+i] = v
				}
			}
		}
	}
}

// nsNativeBLAS reports whether the registered BLAS of T's width is gonum's native implementation.
func nsNativeBLAS[T Float]() bool {
	var z T
	if unsafe.Sizeof(z) == 4 {
		_, ok := blas32.Implementation().(gonum.Implementation)
		return ok
	}
	_, ok := blas64.Implementation().(gonum.Implementation)
	return ok
}

// nsGemmNT is C = alpha·A·Bᵀ + beta·C through the registered BLAS (Sgemm for float32, Dgemm for float64).
func nsGemmNT[T Float](m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if unsafe.Sizeof(alpha) == 4 {
		blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, m, n, k, float32(alpha), nsCast[T, float32](a), lda,
			nsCast[T, float32](b), ldb, float32(beta), nsCast[T, float32](c), ldc)
		return
	}
	blas64.Implementation().Dgemm(blas.NoTrans, blas.Trans, m, n, k, float64(alpha), nsCast[T, float64](a), lda,
		nsCast[T, float64](b), ldb, float64(beta), nsCast[T, float64](c), ldc)
}

// nsCast reinterprets a slice of T as a slice of U of the same width (float32 or float64 and the types
// defined on them), without copying or allocating.
func nsCast[T, U Float](x []T) []U {
	return unsafe.Slice((*U)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}
