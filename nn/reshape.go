package nn

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// Reshape is gorgonia.Reshape that copies. Gorgonia v0.9.18's Reshape returns a view sharing its input's
// memory, and an elementwise op (Add, Sub, HadamardProd, the Broadcast* ops...) whose left operand is that
// view may run in place and overwrite the input — a parameter, a graph input, or an intermediate still
// needed by another op or by the backward pass — silently corrupting weights and gradients. Use Reshape
// when the reshaped node feeds such an op on its left and its input is used anywhere else; gorgonia.Reshape
// stays fine (and free) when the result only feeds a matrix product or one of this package's ops, which
// never write their inputs. The gradient is the reshape back, again a copy.
func Reshape(x *G.Node, shape ...int) (*G.Node, error) {
	if x == nil {
		return nil, errors.New("nn.Reshape: nil input")
	}
	to := tensor.Shape(shape).Clone()
	if x.Dims() < 1 || to.Dims() < 1 || x.Shape().TotalSize() != to.TotalSize() {
		return nil, errors.Errorf("nn.Reshape: cannot reshape %v into %v", x.Shape(), to)
	}
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return nil, errors.Wrap(err, "nn.Reshape")
	}
	return G.ApplyOp(&reshapeOp{from: x.Shape().Clone(), to: to}, x)
}

type reshapeOp struct{ from, to tensor.Shape }

func (op *reshapeOp) Arity() int { return 1 }
func (op *reshapeOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(G.TensorType{Dims: op.from.Dims(), Of: a}, G.TensorType{Dims: op.to.Dims(), Of: a})
}
func (op *reshapeOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.to.Clone(), nil }
func (op *reshapeOp) ReturnsPtr() bool                               { return false }
func (op *reshapeOp) CallsExtern() bool                              { return false }
func (op *reshapeOp) OverwritesInput() int                           { return -1 }
func (op *reshapeOp) WriteHash(h hash.Hash)                          { fmt.Fprint(h, op.String()) }
func (op *reshapeOp) Hashcode() uint32                               { return hashOf(op) }
func (op *reshapeOp) String() string                                 { return fmt.Sprintf("CopyReshape{%v→%v}", op.from, op.to) }

func (op *reshapeOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *reshapeOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 1 {
		return nil, errors.Errorf("%v: want 1 input, got %d", op, len(in))
	}
	x, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if x.Shape().TotalSize() != op.to.TotalSize() {
		return nil, errors.Errorf("%v: input has shape %v", op, x.Shape())
	}
	y := graphop.Reuse(prealloc, x.Dtype(), op.to, in...)
	switch x.Dtype() {
	case tensor.Float64:
		copy(graphop.SliceOf[float64](y), graphop.SliceOf[float64](x))
	case tensor.Float32:
		copy(graphop.SliceOf[float32](y), graphop.SliceOf[float32](x))
	default:
		return nil, errors.Errorf("%v: dtype %v not supported", op, x.Dtype())
	}
	return y, nil
}

func (op *reshapeOp) DiffWRT(int) []bool { return []bool{true} }

func (op *reshapeOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	dx, err := G.ApplyOp(&reshapeOp{from: op.to, to: op.from}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

func (op *reshapeOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	d, err := graphop.DenseOf(dy)
	if err != nil {
		return err
	}
	return graphop.AddInto(in[0], d)
}
