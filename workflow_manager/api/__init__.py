"""The HTTP layer: one handler per swagger operationId (`handlers`), the error mapping (`errors`),
the ASGI middlewares (`middleware`) and the spec as served (`spec`)."""
