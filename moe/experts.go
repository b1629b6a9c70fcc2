package moe

import (
	"fmt"
	"hash"
	"math"
	"sync"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// Experts is the sparse routed-expert computation of a Mixture-of-Experts layer as one graph op:
//
//	y_t = Σ_{i : keep_{t,i} ≠ 0} g_{t,i} · FFN_i(x_t),    FFN_i(x) = (SiLU(x·W1_i) ⊙ x·W3_i)·W2_i
//
// for x (T, d), gates g (T, E), the 0/1 dispatch mask keep (T, E) (TopK, possibly after Capacity), and the
// stacked SwiGLU expert weights W1, W3 (E, d, d_ff) and W2 (E, d_ff, d) in gradlab's (in, out) layout.
// This is the loop of deepseek-ai/DeepSeek-V3 inference/model.py MoE.forward (for each expert, gather the
// tokens routed to it, run the expert, scatter-add the gated output), with its backward pass written out
// directly, so each token costs only its k experts: the forward pass gathers the tokens of each expert into
// one contiguous block (the dispatch is recomputed from keep on every run, so no shape depends on the
// routing) and runs three BLAS products per expert; the backward pass runs six more, reusing the gathered
// tokens, x·W1, x·W3 and σ(x·W1) that the forward pass left in the op's scratch when a fingerprint of the
// inputs (x, keep, W1, W3) matches, and recomputing them otherwise (so a backward pass never sees another
// pass's activations). Gradients flow to x, the gates and the three weights;
// keep is not differentiable. Unselected gates receive a zero gradient, so gates should be zero off the
// mask (mask ⊙ s, as Layer builds them) for the op to equal its dense masked reference.
//
// The gradient is one packed vector computed by one backward op and split into the inputs' shapes by
// copying slice ops: Gorgonia ops have a single output.
func Experts(x, gates, keep, w1, w3, w2 *G.Node) (*G.Node, error) {
	for _, n := range []*G.Node{x, gates, keep, w1, w3, w2} {
		if n == nil {
			return nil, errors.New("moe.Experts: nil input")
		}
	}
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return nil, errors.Wrap(err, "moe.Experts")
	}
	for _, n := range []*G.Node{gates, keep, w1, w3, w2} {
		if n.Dtype() != x.Dtype() {
			return nil, errors.Errorf("moe.Experts: %v has dtype %v, x has %v", n, n.Dtype(), x.Dtype())
		}
	}
	if x.Dims() != 2 || w1.Dims() != 3 {
		return nil, errors.Errorf("moe.Experts: want x (T, d) and W1 (E, d, d_ff), got %v and %v", x.Shape(), w1.Shape())
	}
	t, d := x.Shape()[0], x.Shape()[1]
	e, f := w1.Shape()[0], w1.Shape()[2]
	op := &expertsOp{t: t, d: d, f: f, e: e}
	for _, c := range []struct {
		n    *G.Node
		want tensor.Shape
	}{{gates, tensor.Shape{t, e}}, {keep, tensor.Shape{t, e}}, {w1, tensor.Shape{e, d, f}}, {w3, tensor.Shape{e, d, f}}, {w2, tensor.Shape{e, f, d}}} {
		if !c.n.Shape().Eq(c.want) {
			return nil, errors.Errorf("moe.Experts: %v has shape %v, want %v", c.n, c.n.Shape(), c.want)
		}
	}
	return G.ApplyOp(op, x, gates, keep, w1, w3, w2)
}

// expertsOp: (x, gates, keep, W1, W3, W2) → y (T, d).
type expertsOp struct {
	t, d, f, e int
	w          scratch
}

// scratch holds an op's work buffers (a *work[float32] or *work[float64]) between runs. It is not part of
// the op's identity.
type scratch struct {
	mu sync.Mutex
	w  any
}

func workOf[T float](s *scratch) *work[T] {
	if w, ok := s.w.(*work[T]); ok {
		return w
	}
	w := &work[T]{}
	s.w = w
	return w
}

func (op *expertsOp) Arity() int { return 6 }
func (op *expertsOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	m, t3 := G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 3, Of: a}
	return hm.NewFnType(m, m, m, t3, t3, t3, m)
}
func (op *expertsOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.t, op.d}, nil
}
func (op *expertsOp) ReturnsPtr() bool     { return false }
func (op *expertsOp) CallsExtern() bool    { return false }
func (op *expertsOp) OverwritesInput() int { return -1 }
func (op *expertsOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "MoEExperts{T=%d,d=%d,dff=%d,E=%d}", op.t, op.d, op.f, op.e)
}
func (op *expertsOp) Hashcode() uint32 { return hashOf(op) }
func (op *expertsOp) String() string {
	return fmt.Sprintf("MoEExperts{%d×%d, %d experts of %d}", op.t, op.d, op.e, op.f)
}

func (op *expertsOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

// inputs checks and unpacks the six (or, with dy, seven) inputs.
func (op *expertsOp) inputs(in []G.Value, n int) ([]*tensor.Dense, error) {
	if len(in) != n {
		return nil, errors.Errorf("%v: want %d inputs, got %d", op, n, len(in))
	}
	want := []tensor.Shape{{op.t, op.d}, {op.t, op.e}, {op.t, op.e}, {op.e, op.d, op.f}, {op.e, op.d, op.f}, {op.e, op.f, op.d}, {op.t, op.d}}
	ds := make([]*tensor.Dense, n)
	for i, v := range in {
		d, err := graphop.DenseOf(v)
		if err != nil {
			return nil, errors.Wrapf(err, "%v", op)
		}
		if d.Shape().TotalSize() != want[i].TotalSize() || d.Dtype() != ds0(ds, d).Dtype() {
			return nil, errors.Errorf("%v: input %d is %v %v, want %v", op, i, d.Dtype(), d.Shape(), want[i])
		}
		ds[i] = d
	}
	if err := graphop.CheckFloat(ds[0].Dtype()); err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	return ds, nil
}

func ds0(ds []*tensor.Dense, d *tensor.Dense) *tensor.Dense {
	if ds[0] != nil {
		return ds[0]
	}
	return d
}

func (op *expertsOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	ds, err := op.inputs(in, 6)
	if err != nil {
		return nil, err
	}
	y := graphop.Reuse(prealloc, ds[0].Dtype(), tensor.Shape{op.t, op.d}, in...)
	op.w.mu.Lock()
	defer op.w.mu.Unlock()
	switch y.Dtype() {
	case tensor.Float64:
		forward(op.dims(), workOf[float64](&op.w), slices[float64](ds), graphop.SliceOf[float64](y))
	case tensor.Float32:
		forward(op.dims(), workOf[float32](&op.w), slices[float32](ds), graphop.SliceOf[float32](y))
	}
	return y, nil
}

func (op *expertsOp) dims() dims { return dims{t: op.t, d: op.d, f: op.f, e: op.e} }

func slices[T float](ds []*tensor.Dense) [][]T {
	out := make([][]T, len(ds))
	for i, d := range ds {
		out[i] = graphop.SliceOf[T](d)
	}
	return out
}

func (op *expertsOp) DiffWRT(int) []bool { return []bool{true, true, false, true, true, true} }

func (op *expertsOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != 6 {
		return nil, errors.Errorf("%v: SymDiff wants 6 inputs, got %d", op, len(in))
	}
	gop := &expertsGradOp{expertsOp: expertsOp{t: op.t, d: op.d, f: op.f, e: op.e}, fwd: op}
	packed, err := G.ApplyOp(gop, in[0], in[1], in[2], in[3], in[4], in[5], grad)
	if err != nil {
		return nil, err
	}
	res := make(G.Nodes, 6)
	off := 0
	for i, sh := range op.gradShapes() {
		if sh == nil {
			continue
		}
		if res[i], err = G.ApplyOp(&unpackOp{off: off, shape: sh}, packed); err != nil {
			return nil, err
		}
		off += sh.TotalSize()
	}
	return res, nil
}

// gradShapes lists the shapes of the packed gradient's parts, in input order (nil for keep).
func (op *expertsOp) gradShapes() []tensor.Shape {
	return []tensor.Shape{{op.t, op.d}, {op.t, op.e}, nil, {op.e, op.d, op.f}, {op.e, op.d, op.f}, {op.e, op.f, op.d}}
}

func (op *expertsOp) packedSize() int {
	n := 0
	for _, s := range op.gradShapes() {
		if s != nil {
			n += s.TotalSize()
		}
	}
	return n
}

func (op *expertsOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	vals := make([]G.Value, 0, 7)
	for _, n := range in {
		vals = append(vals, n.Value())
	}
	gop := &expertsGradOp{expertsOp: expertsOp{t: op.t, d: op.d, f: op.f, e: op.e}, fwd: op}
	pv, err := gop.Do(append(vals, dy)...)
	if err != nil {
		return err
	}
	p := pv.(*tensor.Dense)
	off := 0
	for i, sh := range op.gradShapes() {
		if sh == nil {
			continue
		}
		n := sh.TotalSize()
		if _, gerr := in[i].Grad(); gerr == nil { // inputs without a gradient (constants) are skipped
			var err error
			if p.Dtype() == tensor.Float64 {
				err = addInto(in[i], graphop.SliceOf[float64](p)[off:off+n], nil)
			} else {
				err = addInto(in[i], nil, graphop.SliceOf[float32](p)[off:off+n])
			}
			if err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

// expertsGradOp: (x, gates, keep, W1, W3, W2, dy) → [dx | dgates | dW1 | dW3 | dW2] packed in one vector.
type expertsGradOp struct {
	expertsOp
	fwd *expertsOp // the forward op whose work (and cached activations) it uses; nil: its own
}

func (op *expertsGradOp) Arity() int { return 7 }
func (op *expertsGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	m, t3 := G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 3, Of: a}
	return hm.NewFnType(m, m, m, t3, t3, t3, m, G.TensorType{Dims: 1, Of: a})
}
func (op *expertsGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.packedSize()}, nil
}
func (op *expertsGradOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "MoEExpertsGrad{T=%d,d=%d,dff=%d,E=%d}", op.t, op.d, op.f, op.e)
}
func (op *expertsGradOp) Hashcode() uint32 { return hashOf(op) }
func (op *expertsGradOp) String() string {
	return fmt.Sprintf("MoEExpertsGrad{%d×%d, %d experts of %d}", op.t, op.d, op.e, op.f)
}
func (op *expertsGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *expertsGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	ds, err := op.inputs(in, 7)
	if err != nil {
		return nil, err
	}
	p := graphop.Reuse(prealloc, ds[0].Dtype(), tensor.Shape{op.packedSize()}, in...)
	sc := &op.w
	if op.fwd != nil {
		sc = &op.fwd.w
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	switch p.Dtype() {
	case tensor.Float64:
		backward(op.dims(), workOf[float64](sc), slices[float64](ds), graphop.SliceOf[float64](p))
	case tensor.Float32:
		backward(op.dims(), workOf[float32](sc), slices[float32](ds), graphop.SliceOf[float32](p))
	}
	return p, nil
}
func (op *expertsGradOp) DiffWRT(n int) []bool { return make([]bool, n) }
func (op *expertsGradOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.New("moe: second derivatives of Experts are not implemented")
}
func (op *expertsGradOp) DoDiff(G.ExecutionContext, G.Nodes, *G.Node) error {
	return errors.New("moe: second derivatives of Experts are not implemented")
}

// unpackOp copies packed[off : off+|shape|] out as a tensor of the given shape.
type unpackOp struct {
	off   int
	shape tensor.Shape
}

func (op *unpackOp) Arity() int { return 1 }
func (op *unpackOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(G.TensorType{Dims: 1, Of: a}, G.TensorType{Dims: op.shape.Dims(), Of: a})
}
func (op *unpackOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *unpackOp) ReturnsPtr() bool                               { return false }
func (op *unpackOp) CallsExtern() bool                              { return false }
func (op *unpackOp) OverwritesInput() int                           { return -1 }
func (op *unpackOp) WriteHash(h hash.Hash)                          { fmt.Fprint(h, op.String()) }
func (op *unpackOp) Hashcode() uint32                               { return hashOf(op) }
func (op *unpackOp) String() string                                 { return fmt.Sprintf("MoEUnpack{%d, %v}", op.off, op.shape) }
func (op *unpackOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *unpackOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 1 {
		return nil, errors.Errorf("%v: want 1 input, got %d", op, len(in))
	}
	p, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	n := op.shape.TotalSize()
	if p.Shape().TotalSize() < op.off+n {
		return nil, errors.Errorf("%v: input of size %d is too short", op, p.Shape().TotalSize())
	}
	out := graphop.Reuse(prealloc, p.Dtype(), op.shape, in...)
	switch p.Dtype() {
	case tensor.Float64:
		copy(graphop.SliceOf[float64](out), graphop.SliceOf[float64](p)[op.off:op.off+n])
	case tensor.Float32:
		copy(graphop.SliceOf[float32](out), graphop.SliceOf[float32](p)[op.off:op.off+n])
	default:
		return nil, errors.Errorf("%v: dtype %v not supported", op, p.Dtype())
	}
	return out, nil
}
func (op *unpackOp) DiffWRT(n int) []bool                               { return make([]bool, n) }
func (op *unpackOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) { return nil, nil }
func (op *unpackOp) DoDiff(G.ExecutionContext, G.Nodes, *G.Node) error  { return nil }

// dims are the sizes of one Experts computation.
type dims struct{ t, d, f, e int }

// work holds the gathered rows of every expert, contiguous per expert: rows[off[i]:off[i+1]] are the
// tokens routed to expert i, in token order. The backward op shares its forward op's work, so that it can
// reuse X, H1 = X·W1, H3 = X·W3 and σ(H1) from the forward pass when the inputs' fingerprint matches
// (otherwise it recomputes them).
type work[T float] struct {
	rows                  []int
	off                   []int
	x, h1, h3, s, a, o, g []T    // x, o: n×d; h1, h3, σ(h1) s, a: n×f; g: the n gates
	gd                    []T    // dY·W2ᵀ of one expert
	t1, t3                []T    // transposed weights
	fp                    uint64 // fingerprint of the inputs of the last forward pass
	cached                bool   // x, h1, h3, s, a hold that forward pass's activations
	ta, tb, tc            []T    // transposed activations of one expert
}

// dispatch lists the tokens of every expert from the keep mask and sizes the buffers.
func (w *work[T]) dispatch(dm dims, keep, gates []T) int {
	w.rows = w.rows[:0]
	if cap(w.off) < dm.e+1 {
		w.off = make([]int, dm.e+1)
	}
	w.off = w.off[:dm.e+1]
	for j := 0; j < dm.e; j++ {
		w.off[j] = len(w.rows)
		for r := 0; r < dm.t; r++ {
			if keep[r*dm.e+j] != 0 {
				w.rows = append(w.rows, r)
			}
		}
	}
	n := len(w.rows)
	w.off[dm.e] = n
	w.gatherGates(dm, gates)
	w.x = grow(w.x, n*dm.d)
	w.h1 = grow(w.h1, n*dm.f)
	w.h3 = grow(w.h3, n*dm.f)
	w.a = grow(w.a, n*dm.f)
	w.s = grow(w.s, n*dm.f)
	return n
}

// gatherGates reads the gate of every dispatched (token, expert) pair.
func (w *work[T]) gatherGates(dm dims, gates []T) {
	w.g = grow(w.g, len(w.rows))
	for j := 0; j < dm.e; j++ {
		for i := w.off[j]; i < w.off[j+1]; i++ {
			w.g[i] = gates[w.rows[i]*dm.e+j]
		}
	}
}

// activate computes σ(H1) into s and A = SiLU(H1) ⊙ H3 into a.
func (w *work[T]) activate() {
	for i, h := range w.h1 {
		sg := T(sigmoid(float64(h)))
		w.s[i] = sg
		w.a[i] = h * sg * w.h3[i]
	}
}

// fingerprint hashes the bits of the inputs that determine X, H1 and H3 (FNV-1a over 64-bit words, four
// lanes), so that the backward pass reuses the forward pass's activations only for the same inputs.
func fingerprint[T float](xs ...[]T) uint64 {
	const prime = 1099511628211
	h := [4]uint64{14695981039346656037, 1, 2, 3}
	for _, x := range xs {
		i := 0
		for ; i+4 <= len(x); i += 4 {
			for l := 0; l < 4; l++ {
				h[l] = (h[l] ^ bitsOf(x[i+l])) * prime
			}
		}
		for ; i < len(x); i++ {
			h[0] = (h[0] ^ bitsOf(x[i])) * prime
		}
		h[1] = (h[1] ^ uint64(len(x))) * prime
	}
	return h[0] ^ h[1]<<1 ^ h[2]<<2 ^ h[3]<<3
}

func bitsOf[T float](v T) uint64 {
	switch x := any(v).(type) {
	case float32:
		return uint64(math.Float32bits(x))
	case float64:
		return math.Float64bits(x)
	}
	return 0
}

// gather copies the rows of src (T×width) listed in w.rows into dst (n×width).
func (w *work[T]) gather(dst, src []T, width int) {
	for i, r := range w.rows {
		copy(dst[i*width:(i+1)*width], src[r*width:(r+1)*width])
	}
}

// up computes H1 = X·W1_j and H3 = X·W3_j for every expert, as X·(W_jᵀ)ᵀ: gonum's NoTrans×Trans product
// (a dot-product kernel) is its fastest form, so the weights are first transposed into scratch.
func (w *work[T]) up(dm dims, w1, w3 []T) {
	df := dm.d * dm.f
	w.t1 = grow(w.t1, dm.e*df)
	w.t3 = grow(w.t3, dm.e*df)
	for j := 0; j < dm.e; j++ {
		lo, hi := w.off[j], w.off[j+1]
		n := hi - lo
		if n == 0 {
			continue
		}
		t1, t3 := w.t1[j*df:(j+1)*df], w.t3[j*df:(j+1)*df]
		transpose(t1, w1[j*df:(j+1)*df], dm.d, dm.f)
		transpose(t3, w3[j*df:(j+1)*df], dm.d, dm.f)
		xj := w.x[lo*dm.d : hi*dm.d]
		gemm(false, true, n, dm.f, dm.d, 1, xj, dm.d, t1, dm.d, 0, w.h1[lo*dm.f:hi*dm.f], dm.f)
		gemm(false, true, n, dm.f, dm.d, 1, xj, dm.d, t3, dm.d, 0, w.h3[lo*dm.f:hi*dm.f], dm.f)
	}
}

// transpose writes the transpose of src (rows×cols) into dst (cols×rows), in cache-sized tiles.
func transpose[T float](dst, src []T, rows, cols int) {
	const tile = 32
	for i0 := 0; i0 < rows; i0 += tile {
		i1 := min(i0+tile, rows)
		for j0 := 0; j0 < cols; j0 += tile {
			j1 := min(j0+tile, cols)
			for i := i0; i < i1; i++ {
				row := src[i*cols : (i+1)*cols]
				for j := j0; j < j1; j++ {
					dst[j*rows+i] = row[j]
				}
			}
		}
	}
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// forward computes y (T×d) from in = (x, gates, keep, W1, W3, W2).
func forward[T float](dm dims, w *work[T], in [][]T, y []T) {
	x, gates, keep, w1, w3, w2 := in[0], in[1], in[2], in[3], in[4], in[5]
	n := w.dispatch(dm, keep, gates)
	w.gather(w.x, x, dm.d)
	w.up(dm, w1, w3)
	w.activate()
	w.o = grow(w.o, n*dm.d)
	fd := dm.f * dm.d
	for j := 0; j < dm.e; j++ {
		lo, hi := w.off[j], w.off[j+1]
		if hi == lo {
			continue
		}
		t2 := w.t1[j*fd : (j+1)*fd] // W2_jᵀ (d×f), reusing W1ᵀ's space
		transpose(t2, w2[j*fd:(j+1)*fd], dm.f, dm.d)
		gemm(false, true, hi-lo, dm.d, dm.f, 1, w.a[lo*dm.f:hi*dm.f], dm.f, t2, dm.f, 0, w.o[lo*dm.d:hi*dm.d], dm.d)
	}
	w.fp, w.cached = fingerprint(x, keep, w1, w3), true
	clear(y)
	for i, r := range w.rows {
		g := w.g[i]
		yr, or := y[r*dm.d:(r+1)*dm.d], w.o[i*dm.d:(i+1)*dm.d]
		for c, v := range or {
			yr[c] += g * v
		}
	}
}

// backward writes [dx | dgates | dW1 | dW3 | dW2] into p from in = (x, gates, keep, W1, W3, W2, dy).
func backward[T float](dm dims, w *work[T], in [][]T, p []T) {
	x, gates, keep, w1, w3, w2, dy := in[0], in[1], in[2], in[3], in[4], in[5], in[6]
	clear(p)
	td, te, edf := dm.t*dm.d, dm.t*dm.e, dm.e*dm.d*dm.f
	dx, dg := p[:td], p[td:td+te]
	dw1, dw3, dw2 := p[td+te:td+te+edf], p[td+te+edf:td+te+2*edf], p[td+te+2*edf:td+te+3*edf]
	var n int
	if w.cached && w.fp == fingerprint(x, keep, w1, w3) && len(w.off) == dm.e+1 {
		// the forward pass of these inputs left X, H1, H3, σ(H1) and A in w: only the gates are re-read
		n = len(w.rows)
		w.gatherGates(dm, gates)
	} else {
		n = w.dispatch(dm, keep, gates)
		w.gather(w.x, x, dm.d)
		w.up(dm, w1, w3)
		w.activate()
	}
	w.cached = false        // H1 and H3 are overwritten below
	w.o = grow(w.o, n*dm.d) // dY rows, then g·dY, then dX rows
	w.gather(w.o, dy, dm.d)
	maxN := 0
	for j := 0; j < dm.e; j++ {
		maxN = max(maxN, w.off[j+1]-w.off[j])
	}
	w.gd = grow(w.gd, maxN*dm.f)
	for j := 0; j < dm.e; j++ {
		lo, hi := w.off[j], w.off[j+1]
		nj := hi - lo
		if nj == 0 {
			continue
		}
		f, d := dm.f, dm.d
		aj, oj := w.a[lo*f:hi*f], w.o[lo*d:hi*d]
		h1, h3, sg := w.h1[lo*f:hi*f], w.h3[lo*f:hi*f], w.s[lo*f:hi*f]
		w2j := w2[j*f*d : (j+1)*f*d]
		// Gd = dY·W2ᵀ (nj×f): dgate = ⟨Gd, A⟩ row by row, dA = g·Gd.
		gdj := w.gd[:nj*f]
		gemm(false, true, nj, f, d, 1, oj, d, w2j, d, 0, gdj, f)
		for i := 0; i < nj; i++ {
			r := w.rows[lo+i]
			g := w.g[lo+i]
			var dot T
			for c := 0; c < f; c++ {
				dot += gdj[i*f+c] * aj[i*f+c]
			}
			dg[r*dm.e+j] = dot
			for c := 0; c < d; c++ {
				oj[i*d+c] *= g
			}
			for c := 0; c < f; c++ {
				k := i*f + c
				da, z, sk := g*gdj[k], h1[k], sg[k]
				h1[k] = da * h3[k] * sk * (1 + z*(1-sk)) // dH1 = dA ⊙ H3 ⊙ SiLU′(H1)
				h3[k] = da * z * sk                      // dH3 = dA ⊙ SiLU(H1)
			}
		}
		// dW2_j = Aᵀ·(g⊙dY), dW1_j = Xᵀ·dH1, dW3_j = Xᵀ·dH3, each as P·Qᵀ of transposed activations
		w.ta = grow(w.ta, max(nj*f, nj*d))
		w.tb = grow(w.tb, nj*d)
		w.tc = grow(w.tc, nj*f)
		transpose(w.ta[:nj*f], aj, nj, f)
		transpose(w.tb, oj, nj, d)
		gemm(false, true, f, d, nj, 1, w.ta, nj, w.tb, nj, 0, dw2[j*f*d:(j+1)*f*d], d)
		xj := w.x[lo*d : hi*d]
		transpose(w.tb, xj, nj, d) // Xᵀ
		transpose(w.tc, h1, nj, f) // dH1ᵀ
		gemm(false, true, d, f, nj, 1, w.tb, nj, w.tc, nj, 0, dw1[j*d*f:(j+1)*d*f], f)
		transpose(w.tc, h3, nj, f) // dH3ᵀ
		gemm(false, true, d, f, nj, 1, w.tb, nj, w.tc, nj, 0, dw3[j*d*f:(j+1)*d*f], f)
		// dX_j = dH1·W1_jᵀ + dH3·W3_jᵀ, into oj (g⊙dY is no longer needed)
		gemm(false, true, nj, d, f, 1, h1, f, w1[j*d*f:(j+1)*d*f], f, 0, oj, d)
		gemm(false, true, nj, d, f, 1, h3, f, w3[j*d*f:(j+1)*d*f], f, 1, oj, d)
	}
	for i, r := range w.rows {
		dr, or := dx[r*dm.d:(r+1)*dm.d], w.o[i*dm.d:(i+1)*dm.d]
		for c, v := range or {
			dr[c] += v
		}
	}
}
