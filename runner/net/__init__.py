"""Floor 4, net: a NetParameter built into a torch Module. `builder.py` builds one phase as Caffe's
Net::Init does; `structure.py` says which layers a phase has; `feeds.py` gives the shapes of the
blobs data layers feed; `layers/` holds one module per Caffe layer family and the registry;
`fillers.py` the weight fillers; `fast_paths.py` the faster kernels the layers compute with
(`prelu_kernel.py` with `prelu_kernel.c`, C of our own that `compiled.py` compiles on first
use); `conv_chain.py` (with `conv_chain.c`) inference through a chain of convolutions and
PReLUs in one pass by rows; `row_bands.py` inference band by band through the layers that widen
a blob and narrow it, where conv_chain's kernel does not run;
`devices.py` the devices a net may run on, checked to exist here.

May import: runner.errors, runner.config, runner.files
"""
