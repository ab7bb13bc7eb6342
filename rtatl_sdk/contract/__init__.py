"""What training, export and the SDK must agree on, in plain numpy / OpenCV / pydantic: the AU
catalogue (``au``), the 68-point landmark scheme (``landmarks``), alignment and AU centres
(``geometry``), input normalisation (``preprocess``), the model card (``card``) and the table of
model precisions (``precision``). Nothing here imports the rest of the SDK but its errors."""
