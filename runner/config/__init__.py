"""Floor 1, config: what a net, solver or prep file may say and how it is read. `schema.py` is the
single place where every key stands with its type, default and meaning; `loading.py` validates a
YAML or prototxt file into those objects once (nothing downstream touches raw dicts), with its
bytes read as Caffe reads them (`text.py`) and Caffe's legacy forms upgraded on the way
(`upgrade.py`); `caffe_proto.py` is the Caffe prototxt side of the same schema; `memory.py` is
the machine's memory, the bound every declared size is checked against before anything is
allocated, and what a process keeps of the memory it frees; `user_cache.py` the user's cache
folder (datasets fetched, kernels compiled).

May import: runner.errors
"""
