"""The state resource use cases: put, get and delete the (namespace, name) -> URI map that Task
states' `Resource` names are resolved through."""

from __future__ import annotations

from store.interface import Store
from workflow_manager.domain import definitions
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.integrations import IntegrationPolicy
from workflow_manager.domain.models import StateResource, StateResourceType, resource_type_for_uri


class StateResourceService:
    def __init__(self, store: Store, integrations: IntegrationPolicy | None = None):
        self._store = store
        self._integrations = integrations or IntegrationPolicy()

    def put(
        self,
        name: str,
        namespace: str,
        uri: str,
        resource_type: StateResourceType | str = "",
        path: tuple[str, str] | None = None,
    ) -> StateResource:
        """Save the state resource; `path` is the (namespace, name) of the URL it was PUT to, which
        must match. Without a `resource_type`, the URI says which it is."""
        if path is not None:
            path_namespace, path_name = path
            if name != path_name:
                raise InvalidInput("StateResource.Name does not match name in path")
            if namespace != path_namespace:
                raise InvalidInput("StateResource.Namespace does not match namespace in path")
        definitions.validate_aws_name("StateResource name", name)
        definitions.validate_aws_name("StateResource namespace", namespace)
        if not uri:
            raise InvalidInput("StateResource uri is required")
        self._integrations.check_uri(uri)
        resource_type = resource_type or resource_type_for_uri(uri)
        return self._store.save_state_resource(
            StateResource(name=name, namespace=namespace, uri=uri, type=resource_type)
        )

    def get(self, namespace: str, name: str) -> StateResource:
        return self._store.get_state_resource(namespace, name)

    def delete(self, namespace: str, name: str) -> None:
        self._store.delete_state_resource(namespace, name)
