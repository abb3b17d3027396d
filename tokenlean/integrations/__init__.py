"""Front-ends that run a tokenlean pipeline from inside Python code.

- ``optimize`` / ``call_options`` (``tokenlean.integrations.decorator``): tokenlean's stages around
  a function you already have; it becomes the backend (``FunctionBackend``).
- ``TokenleanChatModel`` / ``LangChainBackend`` (``tokenlean.integrations.langchain``): a LangChain
  chat model over a pipeline, and any LangChain chat model as a pipeline's backend. Imported from
  its module, so that importing this package does not import langchain-core.
"""

from tokenlean.integrations.decorator import CallRecord, call_options, optimize
from tokenlean.integrations.function import FunctionBackend

__all__ = ["CallRecord", "FunctionBackend", "call_options", "optimize"]
