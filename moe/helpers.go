package moe

import (
	"hash"
	"hash/fnv"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// float is the element type of every kernel in this package.
type float interface{ ~float32 | ~float64 }

// addInto adds src into the gradient held by n (ADOp.DoDiff must accumulate).
func addInto(n *G.Node, src []float64, src32 []float32) error {
	gv, err := n.Grad()
	if err != nil {
		return err
	}
	dst, ok := gv.(*tensor.Dense)
	if !ok || dst.RequiresIterator() {
		return errors.Errorf("gradient of %v is not a contiguous *tensor.Dense", n)
	}
	switch dst.Dtype() {
	case tensor.Float64:
		d := graphop.SliceOf[float64](dst)
		if len(d) != len(src) {
			return errors.Errorf("gradient of %v: size %d, want %d", n, len(d), len(src))
		}
		for i, v := range src {
			d[i] += v
		}
	case tensor.Float32:
		d := graphop.SliceOf[float32](dst)
		if len(d) != len(src32) {
			return errors.Errorf("gradient of %v: size %d, want %d", n, len(d), len(src32))
		}
		for i, v := range src32 {
			d[i] += v
		}
	default:
		return errors.Errorf("gradient dtype %v not supported", dst.Dtype())
	}
	return nil
}

func hashOf(op interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

// gemm computes C = alpha·op(A)·op(B) + beta·C (row-major) through the registered BLAS (gonum's by default,
// as Gorgonia's tensor package uses): op(A) is m×k, op(B) is k×n.
func gemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	ta, tb := blas.NoTrans, blas.NoTrans
	if tA {
		ta = blas.Trans
	}
	if tB {
		tb = blas.Trans
	}
	switch a := any(a).(type) {
	case []float64:
		blas64.Implementation().Dgemm(ta, tb, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	case []float32:
		blas32.Implementation().Sgemm(ta, tb, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	}
}

// grow returns buf resized to n elements, reallocating only when its capacity is too small.
func grow[T float](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

// constant returns a scalar constant of the dtype dt.
func constant(dt tensor.Dtype, v float64) *G.Node {
	if dt == tensor.Float32 {
		return G.NewConstant(float32(v))
	}
	return G.NewConstant(v)
}
