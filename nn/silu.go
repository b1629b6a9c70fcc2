package nn

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// SiLU is the sigmoid-weighted linear unit SiLU(z) = z·σ(z) (Elfwing et al., "Sigmoid-Weighted Linear Units
// for Neural Network Function Approximation in Reinforcement Learning", 2018; "Swish" in Ramachandran et al.),
// the gate of SwiGLU (Shazeer, "GLU Variants Improve Transformer", 2020). One elementwise custom op, float32
// or float64, with the gradient SiLU′(z) = σ(z)(1 + z(1 − σ(z))).
func SiLU(x *G.Node) (*G.Node, error) {
	if x == nil {
		return nil, errors.New("nn.SiLU: nil input")
	}
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return nil, errors.Wrap(err, "nn.SiLU")
	}
	return G.ApplyOp(siluOp{}, x)
}

// sigmoid is σ(z) in float64: for very negative z, exp(−z) overflows to +Inf and σ correctly becomes 0.
func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// siluOp: x → x·σ(x); siluGradOp: (x, dy) → dy·σ(x)(1 + x(1 − σ(x))).
type siluOp struct{}

func (siluOp) Arity() int { return 1 }
func (siluOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}
func (siluOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (siluOp) ReturnsPtr() bool      { return false }
func (siluOp) CallsExtern() bool     { return false }
func (siluOp) OverwritesInput() int  { return -1 }
func (siluOp) WriteHash(h hash.Hash) { fmt.Fprint(h, "SiLU") }
func (op siluOp) Hashcode() uint32   { return hashOf(op) }
func (siluOp) String() string        { return "SiLU" }

func (op siluOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op siluOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 1 {
		return nil, errors.Errorf("SiLU: want 1 input, got %d", len(in))
	}
	x, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrap(err, "SiLU")
	}
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return nil, errors.Wrap(err, "SiLU")
	}
	y := graphop.Reuse(prealloc, x.Dtype(), x.Shape(), in...)
	switch x.Dtype() {
	case tensor.Float64:
		siluKernel(graphop.SliceOf[float64](x), nil, graphop.SliceOf[float64](y))
	case tensor.Float32:
		siluKernel(graphop.SliceOf[float32](x), nil, graphop.SliceOf[float32](y))
	}
	return y, nil
}

func (siluOp) DiffWRT(int) []bool { return []bool{true} }

func (siluOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	dx, err := G.ApplyOp(siluGradOp{}, in[0], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

func (siluOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	v, err := siluGradOp{}.Do(in[0].Value(), dy)
	if err != nil {
		return err
	}
	return graphop.AddInto(in[0], v.(*tensor.Dense))
}

// siluKernel writes SiLU(x) into out, or, when dy is not nil, dy·SiLU′(x).
func siluKernel[T float](x, dy, out []T) {
	parallelRows(len(x), 1, func(_, lo, hi int) {
		if dy == nil {
			for i := lo; i < hi; i++ {
				z := float64(x[i])
				out[i] = T(z * sigmoid(z))
			}
			return
		}
		for i := lo; i < hi; i++ {
			z := float64(x[i])
			s := sigmoid(z)
			out[i] = dy[i] * T(s*(1+z*(1-s)))
		}
	})
}

type siluGradOp struct{}

func (siluGradOp) Arity() int { return 2 }
func (siluGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a, a)
}
func (siluGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (siluGradOp) ReturnsPtr() bool      { return false }
func (siluGradOp) CallsExtern() bool     { return false }
func (siluGradOp) OverwritesInput() int  { return -1 }
func (siluGradOp) WriteHash(h hash.Hash) { fmt.Fprint(h, "SiLUGrad") }
func (op siluGradOp) Hashcode() uint32   { return hashOf(op) }
func (siluGradOp) String() string        { return "SiLUGrad" }

func (op siluGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op siluGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("SiLUGrad: want 2 inputs, got %d", len(in))
	}
	x, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrap(err, "SiLUGrad")
	}
	dy, err := graphop.DenseOf(in[1])
	if err != nil {
		return nil, errors.Wrap(err, "SiLUGrad")
	}
	if dy.Dtype() != x.Dtype() || dy.Shape().TotalSize() != x.Shape().TotalSize() {
		return nil, errors.Errorf("SiLUGrad: dy %v %v does not match x %v %v", dy.Dtype(), dy.Shape(), x.Dtype(), x.Shape())
	}
	out := graphop.Reuse(prealloc, x.Dtype(), x.Shape(), in...)
	switch x.Dtype() {
	case tensor.Float64:
		siluKernel(graphop.SliceOf[float64](x), graphop.SliceOf[float64](dy), graphop.SliceOf[float64](out))
	case tensor.Float32:
		siluKernel(graphop.SliceOf[float32](x), graphop.SliceOf[float32](dy), graphop.SliceOf[float32](out))
	default:
		return nil, errors.Errorf("SiLUGrad: dtype %v not supported", x.Dtype())
	}
	return out, nil
}
