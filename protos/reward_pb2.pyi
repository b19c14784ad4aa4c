from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpatialInfo(_message.Message):
    __slots__ = ("obj1", "obj2", "locality")
    OBJ1_FIELD_NUMBER: _ClassVar[int]
    OBJ2_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    obj1: str
    obj2: str
    locality: str
    def __init__(self, obj1: _Optional[str] = ..., obj2: _Optional[str] = ..., locality: _Optional[str] = ...) -> None: ...

class NumeracyItem(_message.Message):
    __slots__ = ("obj_name", "num")
    OBJ_NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_FIELD_NUMBER: _ClassVar[int]
    obj_name: str
    num: int
    def __init__(self, obj_name: _Optional[str] = ..., num: _Optional[int] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class NumeracyInfo(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[NumeracyItem]
    def __init__(self, items: _Optional[_Iterable[_Union[NumeracyItem, _Mapping]]] = ...) -> None: ...

class TaskMetadata(_message.Message):
    __slots__ = ("task_type", "nouns", "attr_nouns", "spatial_info", "numeracy_info")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    NOUNS_FIELD_NUMBER: _ClassVar[int]
    ATTR_NOUNS_FIELD_NUMBER: _ClassVar[int]
    SPATIAL_INFO_FIELD_NUMBER: _ClassVar[int]
    NUMERACY_INFO_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    nouns: _containers.RepeatedScalarFieldContainer[str]
    attr_nouns: StringList
    spatial_info: SpatialInfo
    numeracy_info: NumeracyInfo
    def __init__(self, task_type: _Optional[str] = ..., nouns: _Optional[_Iterable[str]] = ..., attr_nouns: _Optional[_Union[StringList, _Mapping]] = ..., spatial_info: _Optional[_Union[SpatialInfo, _Mapping]] = ..., numeracy_info: _Optional[_Union[NumeracyInfo, _Mapping]] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("height", "width", "rgb")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    rgb: bytes
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., rgb: _Optional[bytes] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("request_id", "prompt", "metadata", "images", "num_images", "prompt_index", "raw_images")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    RAW_IMAGES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompt: str
    metadata: TaskMetadata
    images: _containers.RepeatedScalarFieldContainer[bytes]
    num_images: int
    prompt_index: int
    raw_images: _containers.RepeatedCompositeFieldContainer[RawImage]
    def __init__(self, request_id: _Optional[str] = ..., prompt: _Optional[str] = ..., metadata: _Optional[_Union[TaskMetadata, _Mapping]] = ..., images: _Optional[_Iterable[bytes]] = ..., num_images: _Optional[int] = ..., prompt_index: _Optional[int] = ..., raw_images: _Optional[_Iterable[_Union[RawImage, _Mapping]]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Box(_message.Message):
    __slots__ = ("label", "x0", "y0", "x1", "y1", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    def __init__(self, label: _Optional[str] = ..., x0: _Optional[float] = ..., y0: _Optional[float] = ..., x1: _Optional[float] = ..., y1: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class Question(_message.Message):
    __slots__ = ("text", "p_yes", "p_no")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    P_YES_FIELD_NUMBER: _ClassVar[int]
    P_NO_FIELD_NUMBER: _ClassVar[int]
    text: str
    p_yes: float
    p_no: float
    def __init__(self, text: _Optional[str] = ..., p_yes: _Optional[float] = ..., p_no: _Optional[float] = ...) -> None: ...

class ImageDetails(_message.Message):
    __slots__ = ("boxes", "questions", "extra")
    BOXES_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    boxes: _containers.RepeatedCompositeFieldContainer[Box]
    questions: _containers.RepeatedCompositeFieldContainer[Question]
    extra: _struct_pb2.Struct
    def __init__(self, boxes: _Optional[_Iterable[_Union[Box, _Mapping]]] = ..., questions: _Optional[_Iterable[_Union[Question, _Mapping]]] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("score", "details")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    score: float
    details: ImageDetails
    def __init__(self, score: _Optional[float] = ..., details: _Optional[_Union[ImageDetails, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("request_id", "scorer", "version", "results", "score_seconds", "replica", "decode_seconds", "handler_seconds", "prepare_seconds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SCORE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    DECODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HANDLER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PREPARE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    scorer: str
    version: str
    results: _containers.RepeatedCompositeFieldContainer[ImageResult]
    score_seconds: float
    replica: str
    decode_seconds: float
    handler_seconds: float
    prepare_seconds: float
    def __init__(self, request_id: _Optional[str] = ..., scorer: _Optional[str] = ..., version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ImageResult, _Mapping]]] = ..., score_seconds: _Optional[float] = ..., replica: _Optional[str] = ..., decode_seconds: _Optional[float] = ..., handler_seconds: _Optional[float] = ..., prepare_seconds: _Optional[float] = ...) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "scorer", "in_flight", "served", "failed")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[HealthResponse.Status]
        SERVING: _ClassVar[HealthResponse.Status]
        NOT_SERVING: _ClassVar[HealthResponse.Status]
    UNKNOWN: HealthResponse.Status
    SERVING: HealthResponse.Status
    NOT_SERVING: HealthResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    status: HealthResponse.Status
    scorer: str
    in_flight: int
    served: int
    failed: int
    def __init__(self, status: _Optional[_Union[HealthResponse.Status, str]] = ..., scorer: _Optional[str] = ..., in_flight: _Optional[int] = ..., served: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("scorer", "version", "replica", "max_message_bytes", "requires_token", "task_types", "pid")
    SCORER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPES_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    scorer: str
    version: str
    replica: str
    max_message_bytes: int
    requires_token: bool
    task_types: _containers.RepeatedScalarFieldContainer[str]
    pid: int
    def __init__(self, scorer: _Optional[str] = ..., version: _Optional[str] = ..., replica: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., requires_token: _Optional[bool] = ..., task_types: _Optional[_Iterable[str]] = ..., pid: _Optional[int] = ...) -> None: ...
