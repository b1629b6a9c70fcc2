package nn

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// DefaultEps is RMSNorm's default ε.
const DefaultEps = 1e-6

// ApplyRMSNorm is root mean square layer normalisation (Zhang & Sennrich, "Root Mean Square Layer
// Normalization", NeurIPS 2019) over the last axis of x (shape (..., d)) with the gain gamma (shape (d)):
//
//	y = γ ⊙ x / √(mean(x²) + ε)
//
// It is one fused graph op (forward and the analytic backward dx = (u − x̂·mean(x̂⊙u))/r with u = γ⊙dy,
// dγ = Σ_rows dy⊙x̂), float32 or float64. Gorgonia's InverseSqrt, whose gradient is wrong, is not used.
func ApplyRMSNorm(x, gamma *G.Node, eps float64) (*G.Node, error) {
	if x == nil || gamma == nil {
		return nil, errors.New("nn.RMSNorm: nil input")
	}
	if x.Dims() < 1 || gamma.Dims() != 1 {
		return nil, errors.Errorf("nn.RMSNorm: want x (..., d) and gamma (d), got %v and %v", x.Shape(), gamma.Shape())
	}
	d := x.Shape()[x.Dims()-1]
	if gamma.Shape()[0] != d {
		return nil, errors.Errorf("nn.RMSNorm: gamma has %d features, x has %d", gamma.Shape()[0], d)
	}
	if !(eps >= 0) || math.IsInf(eps, 0) {
		return nil, errors.Errorf("nn.RMSNorm: bad eps %v", eps)
	}
	if x.Dtype() != gamma.Dtype() {
		return nil, errors.Errorf("nn.RMSNorm: x is %v, gamma is %v", x.Dtype(), gamma.Dtype())
	}
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return nil, errors.Wrap(err, "nn.RMSNorm")
	}
	return G.ApplyOp(&rmsNormOp{eps: eps, dims: x.Dims()}, x, gamma)
}

// rmsNormOp: (x (..., d), γ (d)) → y (..., d).
type rmsNormOp struct {
	eps  float64
	dims int
}

func (op *rmsNormOp) Arity() int { return 2 }
func (op *rmsNormOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	x := G.TensorType{Dims: op.dims, Of: a}
	return hm.NewFnType(x, G.TensorType{Dims: 1, Of: a}, x)
}
func (op *rmsNormOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (op *rmsNormOp) ReturnsPtr() bool      { return false }
func (op *rmsNormOp) CallsExtern() bool     { return false }
func (op *rmsNormOp) OverwritesInput() int  { return -1 }
func (op *rmsNormOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *rmsNormOp) Hashcode() uint32      { return hashOf(op) }
func (op *rmsNormOp) String() string        { return fmt.Sprintf("RMSNorm{eps=%v,dims=%d}", op.eps, op.dims) }

func (op *rmsNormOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *rmsNormOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("%v: want 2 inputs, got %d", op, len(in))
	}
	x, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v x", op)
	}
	g, err := graphop.DenseOf(in[1])
	if err != nil {
		return nil, errors.Wrapf(err, "%v gamma", op)
	}
	d, err := rmsCheck(x, g)
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	y := graphop.Reuse(prealloc, x.Dtype(), x.Shape(), in...)
	switch x.Dtype() {
	case tensor.Float64:
		rmsForward(graphop.SliceOf[float64](x), graphop.SliceOf[float64](g), graphop.SliceOf[float64](y), d, op.eps)
	case tensor.Float32:
		rmsForward(graphop.SliceOf[float32](x), graphop.SliceOf[float32](g), graphop.SliceOf[float32](y), d, op.eps)
	}
	return y, nil
}

func (op *rmsNormOp) DiffWRT(int) []bool { return []bool{true, true} }

func (op *rmsNormOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("%v: want 2 inputs, got %d", op, len(in))
	}
	dx, err := G.ApplyOp(&rmsNormGradOp{eps: op.eps, dims: op.dims, wrt: 0}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	dg, err := G.ApplyOp(&rmsNormGradOp{eps: op.eps, dims: op.dims, wrt: 1}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dg}, nil
}

func (op *rmsNormOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	for wrt := 0; wrt < 2; wrt++ {
		gop := &rmsNormGradOp{eps: op.eps, dims: op.dims, wrt: wrt}
		v, err := gop.Do(in[0].Value(), in[1].Value(), dy)
		if err != nil {
			return err
		}
		if err := graphop.AddInto(in[wrt], v.(*tensor.Dense)); err != nil {
			return err
		}
	}
	return nil
}

// rmsNormGradOp: (x, γ, dy) → dx (wrt 0) or dγ (wrt 1).
type rmsNormGradOp struct {
	eps  float64
	dims int
	wrt  int
}

func (op *rmsNormGradOp) Arity() int { return 3 }
func (op *rmsNormGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	x := G.TensorType{Dims: op.dims, Of: a}
	g := G.TensorType{Dims: 1, Of: a}
	if op.wrt == 0 {
		return hm.NewFnType(x, g, x, x)
	}
	return hm.NewFnType(x, g, x, g)
}
func (op *rmsNormGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[op.wrt].(tensor.Shape).Clone(), nil
}
func (op *rmsNormGradOp) ReturnsPtr() bool      { return false }
func (op *rmsNormGradOp) CallsExtern() bool     { return false }
func (op *rmsNormGradOp) OverwritesInput() int  { return -1 }
func (op *rmsNormGradOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *rmsNormGradOp) Hashcode() uint32      { return hashOf(op) }
func (op *rmsNormGradOp) String() string {
	return fmt.Sprintf("RMSNormGrad{eps=%v,dims=%d,wrt=%d}", op.eps, op.dims, op.wrt)
}

func (op *rmsNormGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *rmsNormGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 3 {
		return nil, errors.Errorf("%v: want 3 inputs, got %d", op, len(in))
	}
	var ts [3]*tensor.Dense
	for i, v := range in {
		t, err := graphop.DenseOf(v)
		if err != nil {
			return nil, errors.Wrapf(err, "%v input %d", op, i)
		}
		ts[i] = t
	}
	x, g, dy := ts[0], ts[1], ts[2]
	d, err := rmsCheck(x, g)
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if dy.Dtype() != x.Dtype() || dy.Shape().TotalSize() != x.Shape().TotalSize() {
		return nil, errors.Errorf("%v: dy %v %v does not match x %v %v", op, dy.Dtype(), dy.Shape(), x.Dtype(), x.Shape())
	}
	shape := x.Shape()
	if op.wrt == 1 {
		shape = g.Shape()
	}
	out := graphop.Reuse(prealloc, x.Dtype(), shape, in...)
	switch x.Dtype() {
	case tensor.Float64:
		rmsBackward(op.wrt, graphop.SliceOf[float64](x), graphop.SliceOf[float64](g), graphop.SliceOf[float64](dy), graphop.SliceOf[float64](out), d, op.eps)
	case tensor.Float32:
		rmsBackward(op.wrt, graphop.SliceOf[float32](x), graphop.SliceOf[float32](g), graphop.SliceOf[float32](dy), graphop.SliceOf[float32](out), d, op.eps)
	}
	return out, nil
}

func rmsCheck(x, g *tensor.Dense) (int, error) {
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return 0, err
	}
	if x.Dims() < 1 || g.Shape().TotalSize() != x.Shape()[x.Dims()-1] || g.Dtype() != x.Dtype() {
		return 0, errors.Errorf("x %v %v and gamma %v %v do not match", x.Dtype(), x.Shape(), g.Dtype(), g.Shape())
	}
	return g.Shape().TotalSize(), nil
}

// rmsInv returns 1/√(mean(x²)+ε) for one row, accumulated in float64.
func rmsInv[T float](xr []T, eps float64) float64 {
	var ss float64
	for _, v := range xr {
		ss += float64(v) * float64(v)
	}
	return 1 / math.Sqrt(ss/float64(len(xr))+eps)
}

func rmsForward[T float](x, g, y []T, d int, eps float64) {
	parallelRows(len(x)/d, d, func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
			inv := T(rmsInv(xr, eps))
			for i, v := range xr {
				yr[i] = g[i] * (v * inv)
			}
		}
	})
}

func rmsBackward[T float](wrt int, x, g, dy, out []T, d int, eps float64) {
	rows := len(x) / d
	if wrt == 0 {
		parallelRows(rows, d, func(_, lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, dyr, dxr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], out[r*d:(r+1)*d]
				inv := rmsInv(xr, eps)
				var dot float64 // Σ u⊙x̂ · r = Σ γ dy x
				for i, v := range xr {
					dot += float64(g[i]) * float64(dyr[i]) * float64(v)
				}
				m := T(dot * inv * inv / float64(d)) // mean(x̂⊙u)/r
				invT := T(inv)
				for i, v := range xr {
					dxr[i] = (g[i]*dyr[i] - v*m) * invT
				}
			}
		})
		return
	}
	// dγ = Σ_rows dy ⊙ x̂: per-chunk partial sums (in float64), then summed in chunk order.
	parts := make([][]float64, chunks(rows, d))
	parallelRows(rows, d, func(c, lo, hi int) {
		acc := make([]float64, d)
		for r := lo; r < hi; r++ {
			xr, dyr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d]
			inv := rmsInv(xr, eps)
			for i, v := range xr {
				acc[i] += float64(dyr[i]) * float64(v) * inv
			}
		}
		parts[c] = acc
	})
	for i := range out[:d] {
		var s float64
		for _, p := range parts {
			s += p[i]
		}
		out[i] = T(s)
	}
}

func hashOf(op interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}
