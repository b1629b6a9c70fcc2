package attention

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// float is the element type of every kernel in this package.
type float interface{ ~float32 | ~float64 }

// headsOp moves between the token-major layout of a projection's output, (B·T, H·W) with head h in columns
// [h·W, (h+1)·W), and the head-major layout attention works in, (B·H, T, hi−lo), keeping columns [lo, hi)
// of every head's W-wide block (PyTorch's view(B, T, H, W)[..., lo:hi].transpose(1, 2)). merge is the
// adjoint: (B·H, T, hi−lo) → (B·T, H·W) with zeros outside [lo, hi). Each is the other's gradient. The op
// always writes a fresh contiguous result, so it replaces Gorgonia's Reshape/Transpose/Slice views (see
// nn.Reshape for the in-place trap those views set).
type headsOp struct {
	B, T, H, W, lo, hi int
	merge              bool
}

func (op *headsOp) inShape() tensor.Shape {
	if op.merge {
		return tensor.Shape{op.B * op.H, op.T, op.hi - op.lo}
	}
	return tensor.Shape{op.B * op.T, op.H * op.W}
}

func (op *headsOp) outShape() tensor.Shape {
	if op.merge {
		return tensor.Shape{op.B * op.T, op.H * op.W}
	}
	return tensor.Shape{op.B * op.H, op.T, op.hi - op.lo}
}

func (op *headsOp) Arity() int { return 1 }
func (op *headsOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(G.TensorType{Dims: op.inShape().Dims(), Of: a}, G.TensorType{Dims: op.outShape().Dims(), Of: a})
}
func (op *headsOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.outShape(), nil }
func (op *headsOp) ReturnsPtr() bool                               { return false }
func (op *headsOp) CallsExtern() bool                              { return false }
func (op *headsOp) OverwritesInput() int                           { return -1 }
func (op *headsOp) WriteHash(h hash.Hash)                          { fmt.Fprint(h, op.String()) }
func (op *headsOp) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}
func (op *headsOp) String() string {
	kind := "SplitHeads"
	if op.merge {
		kind = "MergeHeads"
	}
	return fmt.Sprintf("%s{B=%d,T=%d,H=%d,W=%d,cols=[%d,%d)}", kind, op.B, op.T, op.H, op.W, op.lo, op.hi)
}

func (op *headsOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *headsOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 1 {
		return nil, errors.Errorf("%v: want 1 input, got %d", op, len(in))
	}
	x, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if x.Shape().TotalSize() != op.inShape().TotalSize() {
		return nil, errors.Errorf("%v: input has shape %v, want %v", op, x.Shape(), op.inShape())
	}
	y := graphop.Reuse(prealloc, x.Dtype(), op.outShape(), in...)
	switch x.Dtype() {
	case tensor.Float64:
		headsKernel(op, graphop.SliceOf[float64](x), graphop.SliceOf[float64](y))
	case tensor.Float32:
		headsKernel(op, graphop.SliceOf[float32](x), graphop.SliceOf[float32](y))
	default:
		return nil, errors.Errorf("%v: dtype %v not supported", op, x.Dtype())
	}
	return y, nil
}

func headsKernel[T float](op *headsOp, x, y []T) {
	w := op.hi - op.lo
	if op.merge {
		clear(y)
	}
	for b := 0; b < op.B; b++ {
		for t := 0; t < op.T; t++ {
			row := (b*op.T + t) * op.H * op.W
			for h := 0; h < op.H; h++ {
				flat := row + h*op.W + op.lo
				head := ((b*op.H+h)*op.T + t) * w
				if op.merge {
					copy(y[flat:flat+w], x[head:head+w])
				} else {
					copy(y[head:head+w], x[flat:flat+w])
				}
			}
		}
	}
}

func (op *headsOp) DiffWRT(int) []bool { return []bool{true} }

func (op *headsOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	adj := *op
	adj.merge = !op.merge
	dx, err := G.ApplyOp(&adj, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

func (op *headsOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	adj := *op
	adj.merge = !op.merge
	v, err := adj.Do(dy)
	if err != nil {
		return err
	}
	return graphop.AddInto(in[0], v.(*tensor.Dense))
}

// splitHeads applies headsOp (split) to x of shape (B·T, H·W).
func splitHeads(x *G.Node, B, T, H, W, lo, hi int) (*G.Node, error) {
	op := &headsOp{B: B, T: T, H: H, W: W, lo: lo, hi: hi}
	if x == nil || !x.Shape().Eq(op.inShape()) {
		return nil, errors.Errorf("attention: split heads: want %v, got %v", op.inShape(), shapeOf(x))
	}
	return G.ApplyOp(op, x)
}

// mergeHeads applies headsOp (merge) to x of shape (B·H, T, W): the result is (B·T, H·W).
func mergeHeads(x *G.Node, B, T, H, W int) (*G.Node, error) {
	op := &headsOp{B: B, T: T, H: H, W: W, lo: 0, hi: W, merge: true}
	if x == nil || x.Shape().TotalSize() != op.inShape().TotalSize() {
		return nil, errors.Errorf("attention: merge heads: want %v, got %v", op.inShape(), shapeOf(x))
	}
	if !x.Shape().Eq(op.inShape()) {
		var err error
		if x, err = G.Reshape(x, op.inShape()); err != nil { // feeds only this op, which never writes it
			return nil, err
		}
	}
	return G.ApplyOp(op, x)
}

func shapeOf(n *G.Node) tensor.Shape {
	if n == nil {
		return nil
	}
	return n.Shape()
}
