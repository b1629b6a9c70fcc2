package nn

import (
	"runtime"
	"sync"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// float is the element type of every kernel in this package.
type float interface{ ~float32 | ~float64 }

// denseOf returns v as a contiguous, row-major *tensor.Dense. Views that need an iterator (non-contiguous
// slices, transposes) are materialised into a fresh tensor; contiguous tensors are returned as they are.
func denseOf(v G.Value) (*tensor.Dense, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return nil, errors.Errorf("expected a *tensor.Dense, got %T", v)
	}
	if d.RequiresIterator() {
		m, ok := d.Materialize().(*tensor.Dense)
		if !ok {
			return nil, errors.New("cannot materialise a tensor view")
		}
		d = m
	}
	return d, nil
}

// sliceOf returns the first Size() elements of d's backing array as []T.
func sliceOf[T float](d *tensor.Dense) []T {
	return d.Data().([]T)[:d.Shape().TotalSize()]
}

// scalarOf reads a scalar Value (a *G.F64, *G.F32 or a one-element tensor) as float64.
func scalarOf(v G.Value) (float64, error) {
	switch s := v.(type) {
	case *G.F64:
		return float64(*s), nil
	case *G.F32:
		return float64(*s), nil
	case *tensor.Dense:
		if s.Shape().TotalSize() != 1 {
			return 0, errors.Errorf("expected a scalar, got a tensor of shape %v", s.Shape())
		}
		switch s.Dtype() {
		case tensor.Float64:
			return s.Get(0).(float64), nil
		case tensor.Float32:
			return float64(s.Get(0).(float32)), nil
		}
		return 0, errors.Errorf("expected a float scalar, got %v", s.Dtype())
	}
	return 0, errors.Errorf("expected a scalar, got %T", v)
}

// checkFloat rejects dtypes other than float32 and float64.
func checkFloat(dt tensor.Dtype) error {
	if dt != tensor.Float64 && dt != tensor.Float32 {
		return errors.Errorf("dtype %v not supported: use float32 or float64", dt)
	}
	return nil
}

// overlaps reports whether two values share memory.
func overlaps(a, b tensor.Memory) bool {
	if a == nil || b == nil || a.MemSize() == 0 || b.MemSize() == 0 {
		return false
	}
	a0, b0 := a.Uintptr(), b.Uintptr()
	return a0 < b0+b.MemSize() && b0 < a0+a.MemSize()
}

// reuse returns prealloc as a *tensor.Dense if it can hold the result (same dtype and shape, contiguous, not
// a view, sharing no memory with any input); otherwise it allocates a fresh tensor. Gorgonia's TapeMachine may
// pass a register that last held a value of another shape or dtype, so this check is not optional.
func reuse(prealloc G.Value, dt tensor.Dtype, shape tensor.Shape, inputs ...G.Value) *tensor.Dense {
	if p, ok := prealloc.(*tensor.Dense); ok && p.Dtype() == dt && p.Shape().Eq(shape) &&
		!p.IsMaterializable() && !p.RequiresIterator() && p.DataSize() >= shape.TotalSize() {
		clash := false
		for _, in := range inputs {
			if m, ok := in.(tensor.Memory); ok && overlaps(p, m) {
				clash = true
				break
			}
		}
		if !clash {
			return p
		}
	}
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.Of(dt))
}

// addInto adds src into the gradient held by n (for ADOp.DoDiff, which must accumulate).
func addInto(n *G.Node, src *tensor.Dense) error {
	gv, err := n.Grad()
	if err != nil {
		return err
	}
	dst, ok := gv.(*tensor.Dense)
	if !ok {
		return errors.Errorf("gradient of %v is a %T, not a *tensor.Dense", n, gv)
	}
	if dst.RequiresIterator() || dst.Shape().TotalSize() != src.Shape().TotalSize() || dst.Dtype() != src.Dtype() {
		return errors.Errorf("gradient of %v: cannot add %v %v into %v %v", n, src.Dtype(), src.Shape(), dst.Dtype(), dst.Shape())
	}
	switch dst.Dtype() {
	case tensor.Float64:
		axpy(sliceOf[float64](dst), sliceOf[float64](src))
	case tensor.Float32:
		axpy(sliceOf[float32](dst), sliceOf[float32](src))
	default:
		return errors.Errorf("gradient dtype %v not supported", dst.Dtype())
	}
	return nil
}

func axpy[T float](dst, src []T) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] += v
	}
}

// minParallelWork is the number of elements below which kernels stay on one goroutine.
const minParallelWork = 1 << 15

// parallelRows runs f over [0, rows) split into contiguous chunks, one per core, when rows*width is large
// enough to pay for the goroutines; otherwise it calls f(0, rows) directly. It returns the number of chunks
// used, and f receives its chunk index.
func parallelRows(rows, width int, f func(chunk, lo, hi int)) int {
	workers := runtime.GOMAXPROCS(0)
	if workers > rows {
		workers = rows
	}
	if workers <= 1 || rows*width < minParallelWork {
		f(0, 0, rows)
		return 1
	}
	var wg sync.WaitGroup
	per := (rows + workers - 1) / workers
	n := 0
	for lo := 0; lo < rows; lo += per {
		hi := min(lo+per, rows)
		wg.Add(1)
		go func(c, lo, hi int) {
			defer wg.Done()
			f(c, lo, hi)
		}(n, lo, hi)
		n++
	}
	wg.Wait()
	return n
}

// chunks returns how many chunks parallelRows(rows, width, ·) will use, so callers can size per-chunk
// buffers before the call.
func chunks(rows, width int) int {
	workers := runtime.GOMAXPROCS(0)
	if workers > rows {
		workers = rows
	}
	if workers <= 1 || rows*width < minParallelWork {
		return 1
	}
	per := (rows + workers - 1) / workers
	return (rows + per - 1) / per
}
